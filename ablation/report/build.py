"""Building the report of a sweep: read the runs and baselines, then write every table,
plot and ``report.md`` (the other modules of :mod:`ablation.report` do each step)."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from ablation.errors import AblationError
from ablation.files import write_text
from ablation.report.budgets import budget_table, ranking_across_budgets
from ablation.report.configurations import aggregate_seeds, assign_configurations
from ablation.report.evaluations import (
    Evaluation,
    find_evaluations,
    is_evaluation,
    read_evaluation,
    unique_baselines,
)
from ablation.report.fairness import (
    fairness_markdown,
    fairness_problems,
    fairness_table,
    read_fairness,
    varied_parameters,
)
from ablation.report.html import Page, write_page
from ablation.report.listening import write_listening
from ablation.report.markdown import write_report
from ablation.report.plots import plot_all
from ablation.report.runs import Run, checkpoint_file, read_run
from ablation.report.significance import (
    per_track_sdr,
    seed_pairs,
    two_way_pairs,
    wilcoxon_pairs,
)
from ablation.report.tables import runs_table, scores_table, targets
from ablation.report.verdict import flags, headline
from ablation.report.wandb_log import log_report
from ablation.runs import SUMMARY
from ablation.tuning import tuning_table


class ReportError(AblationError):
    """A problem with the runs given to the report, phrased for the user."""


# Longer names of chosen runs keep the first runs' names whole, then say how many more,
# and a digest of the whole set keeps two sets apart.
NAME_CHARACTERS = 64


def report_name(sweep: str | None, runs: Sequence[str | Path]) -> str:
    """The report's name, and its folder ``results/<name>/``: the sweep's (given by name or
    YAML path), else one made of the chosen runs' folder names (``runs-a+b``), so that a
    report of chosen runs never lands in, and overwrites, a sweep's report."""
    if sweep:  # a name may hold dots (demo-my.data): only a YAML's suffix goes
        return Path(sweep).stem if Path(sweep).suffix in (".yaml", ".yml") else Path(sweep).name
    names = [Path(r).resolve().name for r in runs]
    if len("runs-" + "+".join(names)) <= NAME_CHARACTERS:
        return "runs-" + "+".join(names)
    digest = hashlib.sha1("\n".join(sorted(str(Path(r).resolve()) for r in runs)).encode())
    tail = f"-{digest.hexdigest()[:8]}"
    kept: list[str] = []
    for name in names:
        more = f"+{len(names) - len(kept) - 1}more" if len(kept) + 1 < len(names) else ""
        if len("runs-" + "+".join([*kept, name]) + more + tail) > NAME_CHARACTERS:
            break
        kept.append(name)
    return "runs-" + "+".join([*kept, f"{len(names) - len(kept)}more"]) + tail


def build_report(runs: list[Path], out: Path, name: str, wandb_log: bool = True) -> Path:
    """Build the comparison report of ``runs`` into ``out``.

    Args:
        runs: run folders (``runs/<sweep>/<run>``), or evaluation folders of
            baselines (any folder holding ``evaluation.json``).
        out: folder for ``report.md``, ``runs.csv``, ``configurations.csv``,
            ``significance.csv``, ``significance_seeds.csv``, ``significance_both.csv``
            (the two-way bootstrap over seeds and tracks), ``tracks.csv``,
            ``scores.csv``, ``fairness.csv``, ``budgets.csv`` (test SDR of each run's
            budget-fraction checkpoints), ``ranking_budgets.csv`` (the winner at each
            fraction and Kendall's tau with the full budget's ranking), ``tuning.csv``
            (the learning rates the runs' tuning stage tried and chose), the
            PNG plots, ``index.html`` and the listening excerpts in ``listen/``.
        name: title of the report (the sweep name).
        wandb_log: also log the tables and plots to a new W&B run ``report-<name>``
            when W&B is online (a failure there only warns).

    Returns:
        The path of ``report.md``.

    Raises:
        ReportError: when no folder is given or one does not exist.
    """
    folders = [Path(r) for r in runs]
    absent = [str(f) for f in folders if not f.is_dir()]
    if not folders or absent:
        raise ReportError(
            f"nothing to report on (missing: {', '.join(absent) or 'no folders given'}): "
            f"expected run folders such as runs/<sweep>/<run>. Pass SWEEP=<name> or "
            f"RUNS='dir1 dir2'."
        )
    run_list, baselines = _collect(folders)
    if run_list and not any((r.folder / SUMMARY).is_file() for r in run_list):
        shown = ", ".join(str(r.folder) for r in run_list[:3]) + (" ..." if run_list[3:] else "")
        raise ReportError(
            f"none of the {len(run_list)} run folder(s) given has finished (no {SUMMARY} in "
            f"{shown}): expected finished runs. Let them finish (or resume them with "
            f"`ablation sweep`), then report."
        )
    scored = targets(run_list, baselines)
    table = runs_table(run_list, baselines, scored)
    scores = scores_table(run_list, baselines)
    configurations = aggregate_seeds(table)
    tracks = per_track_sdr(run_list, baselines)
    models = list(dict.fromkeys(r.configuration for r in run_list if r.evaluation))
    pairs = wilcoxon_pairs(tracks[tracks.configuration.isin(models)], models)
    seeds = {r.name: r.seed for r in run_list}
    over_seeds = seed_pairs(tracks, seeds, models)
    both = two_way_pairs(tracks, seeds, models)
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "runs.csv", table, index=False)
    _write_csv(out / "configurations.csv", configurations)
    _write_csv(out / "significance.csv", pairs, index=False)
    _write_csv(out / "significance_seeds.csv", over_seeds, index=False)
    _write_csv(out / "significance_both.csv", both, index=False)
    _write_csv(out / "tracks.csv", tracks, index=False)
    _write_csv(out / "scores.csv", scores)
    tuning = _tuning(run_list)
    if tuning is not None:
        _write_csv(out / "tuning.csv", tuning, index=False)
    budgets = budget_table(run_list)
    ranking = ranking_across_budgets(budgets)
    _write_csv(out / "budgets.csv", budgets, index=False)
    _write_csv(out / "ranking_budgets.csv", ranking, index=False)
    order = models + [b.label for b in baselines]
    plots = plot_all(run_list, table, tracks, order, out, budgets)
    records = {r.name: read_fairness(r.folder) for r in run_list}
    varied = varied_parameters([r.folder for r in run_list])
    fairness, problems = fairness_table(records), fairness_problems(records, seeds, varied)
    _write_csv(out / "fairness.csv", fairness, index_label="run")
    fairness_section = fairness_markdown(fairness, problems)
    print(f"Fairness of {name}:\n{fairness_section}")
    missing = [
        f"{r.name}: no test evaluation; run `make eval CKPT={checkpoint_file(r.folder)}`"
        for r in run_list
        if r.evaluation is None
    ]
    labels = [b.label for b in baselines]
    verdict = headline(configurations, labels, tracks), flags(table, configurations, labels, scored)
    print("\n".join([verdict[0], *verdict[1]]))
    report = write_report(
        out, name, table, configurations, pairs, plots, missing, fairness_section, over_seeds,
        ranking, tuning, both, verdict,
    )  # fmt: skip
    excerpts, note = _listen(run_list, out)
    page = Page(name, table, configurations, labels, scored, scores, pairs, fairness, problems)
    page.plots, page.excerpts, page.listening_note, page.missing = plots, excerpts, note, missing
    page.ranking, page.tuning, page.tracks = ranking, tuning, tracks
    page.headline, page.flags = verdict
    print(f"report page: {write_page(out, page)}")
    if wandb_log:
        log_report(name, table, pairs, plots, report, excerpts, out)
    return report


def _tuning(runs: list[Run]) -> pd.DataFrame | None:
    """The tuning table of the tuning runs the runs took their rates from, if any."""
    folders = sorted({str(r.config["run.tuning"]) for r in runs if r.config.get("run.tuning")})
    tables = []
    for folder in folders:
        try:
            tables.append(tuning_table(folder).assign(tuning=folder))
        except AblationError as error:
            warnings.warn(f"tuning table skipped: {error}", stacklevel=2)
    return pd.concat(tables, ignore_index=True) if tables else None


def _listen(runs: list[Run], out: Path) -> tuple[list, str]:
    """The listening excerpts, or none and why (the data or a checkpoint is unreadable
    here, e.g. a report built away from the data)."""
    try:
        return write_listening(runs, out), ""
    except (AblationError, OSError) as error:
        warnings.warn(f"listening excerpts skipped: {error}", stacklevel=2)
        return [], f"Listening excerpts skipped: {error}"


def _collect(folders: list[Path]) -> tuple[list[Run], list[Evaluation]]:
    """Runs, and the baselines passed directly or found in the run folders."""
    given = {f for f in folders if is_evaluation(f)}
    runs = [read_run(f) for f in folders if f not in given]
    baselines = [e for e in (read_evaluation(f) for f in sorted(given)) if e is not None]
    for run in runs:
        baselines += [e for e in find_evaluations(run.folder) if e.manifest.get("baseline")]
    assign_configurations(runs)
    return runs, unique_baselines(baselines)


def _write_csv(path: Path, df: pd.DataFrame, **to_csv) -> None:
    write_text(path, df.to_csv(**to_csv))
