"""One comparison table, significance tests and plots for the runs of a sweep.

Runs are read from their folders (:mod:`~ablation.report.runs`), with the
evaluations of ``ablation eval`` below them or passed as baselines
(:mod:`~ablation.report.evaluations`). Runs that differ only in their seed form one
configuration (:mod:`~ablation.report.configurations`), aggregated as mean and
standard deviation over seeds and compared pairwise with the Wilcoxon signed-rank
test on per-track SDR (:mod:`~ablation.report.significance`), as SiSEC 2018 did.
:func:`build_report` writes the CSVs, plots and ``report.md``.
"""

from ablation.report.build import ReportError, build_report, report_name
from ablation.report.runs import Run, read_run

__all__ = ["ReportError", "Run", "build_report", "read_run", "report_name"]
