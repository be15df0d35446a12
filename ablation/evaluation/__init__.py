"""Test-set evaluation of a checkpoint or a baseline, the way SiSEC 2018 evaluated.

Protocol (museval v4, the SiSEC 2018 MUS task): BSS Eval *images* metrics (SDR,
SIR, ISR, SAR) on 1 s windows with a 1 s hop, the median over the frames of a
track, then the median over tracks. A window where a reference or an estimate
is silent has no score (museval gives NaN); such frames are left out of every
median and counted in the summary. How targets share BSS Eval calls:
:mod:`ablation.evaluation.protocol`.

An output folder holds::

    evaluation.json        what was evaluated; a later run resumes only the same evaluation
    <subset>/<track>.json  museval's per-track format, plus "mse", "samples", "scored_together"
    results.csv            museval's frame table: track, target, metric, time, score
    tracks.csv             per track and target: the median over frames of each metric, and MSE
    summary.json           {target: {metric: median over tracks of the median over frames}}
    summary.md             the same, the mean over tracks, NaN frame counts, scoring groups
    sdr_boxplot.png        per-track SDR per target

Each track is written by one worker (write, then rename), and the summaries are
built from the per-track files only, so an interrupted evaluation resumes where
it stopped and a parallel run gives the files of a serial one.

Modules, one job each: ``protocol`` (metrics, framing, scoring groups), ``plan``
(what a worker needs), ``request`` (checks, manifest, output folder), ``tracks``
(reading MUSDB18), ``baselines`` (mixture, gain, oracle IRM), ``separation`` (a
checkpoint's estimates through :mod:`ablation.separate`), ``scoring`` (BSS Eval of one
track), ``results`` (per-track files, resume), ``pool`` (worker processes),
``aggregate`` (tables and summaries), ``wandb_log`` (W&B), ``entry`` (the whole run).
"""

from ablation.constants import EVALUATION_MANIFEST as MANIFEST
from ablation.evaluation.aggregate import Results, aggregate, score_table, write_results
from ablation.evaluation.baselines import BASELINES, oracle_gain, oracle_irm
from ablation.evaluation.entry import evaluate_checkpoint
from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import (
    BACKENDS,
    HOP_SECONDS,
    METRICS,
    WIN_SECONDS,
    EvaluationError,
    Group,
    scored_targets,
    scoring_groups,
)
from ablation.evaluation.request import default_out, prepare
from ablation.evaluation.results import read_track_file
from ablation.evaluation.wandb_log import WandbRun, find_wandb_run, log_to_wandb, wandb_prefix

__all__ = [
    "BACKENDS",
    "BASELINES",
    "HOP_SECONDS",
    "MANIFEST",
    "METRICS",
    "WIN_SECONDS",
    "EvaluationError",
    "Group",
    "Plan",
    "Results",
    "WandbRun",
    "aggregate",
    "default_out",
    "evaluate_checkpoint",
    "find_wandb_run",
    "log_to_wandb",
    "wandb_prefix",
    "oracle_gain",
    "oracle_irm",
    "prepare",
    "score_table",
    "read_track_file",
    "scored_targets",
    "scoring_groups",
    "write_results",
]
