"""``make sweep`` / ``ablation sweep``: one W&B sweep YAML, online or offline.

Online (W&B credentials, ``WANDB_MODE`` not offline) the YAML goes to W&B as it is
(``wandb sweep``) and one ``wandb agent`` runs per GPU; other machines join with the
printed ``wandb agent ENTITY/PROJECT/ID`` line. Offline, W&B's own sweep engine
(the ``sweeps`` package) expands the same YAML into the same runs, which are
executed here one after another (or one per GPU at a time), each logging an offline
W&B run. Either way each run writes ``runs/<sweep>/<run-name>/``; a finished run is
skipped and an interrupted one resumes from ``last.ckpt`` when the sweep is
started again.

Modules by job: :mod:`.config` (the YAML, its grid and the checks before training),
:mod:`.offline` (the offline runner), :mod:`.online` (W&B agents) and :mod:`.cluster`
(Slurm submission). What the user's parameters become is :mod:`ablation.arguments`.
"""

from __future__ import annotations

import os
from pathlib import Path

from ablation.arguments import command
from ablation.sweep.cluster import PLACEHOLDER_SWEEP_ID, submit_slurm
from ablation.sweep.config import (
    SweepError,
    cell_run_dir,
    check_count,
    check_gpus,
    grid,
    keep_sweep_copy,
    load_sweep,
    offline_cells,
    sweep_file,
    sweep_name,
    with_seeds,
)
from ablation.sweep.offline import Outcome, run_cell, run_offline
from ablation.sweep.online import create_sweep, run_online
from ablation.wandb_mode import wandb_online

__all__ = [
    "PLACEHOLDER_SWEEP_ID", "Outcome", "SweepError", "cell_run_dir", "check_count",
    "check_gpus", "command", "create_sweep", "grid", "keep_sweep_copy", "load_sweep",
    "offline_cells", "run_cell", "run_offline", "run_online", "run_sweep", "submit_slurm",
    "sweep_file", "sweep_name", "with_seeds",
]  # fmt: skip


def run_sweep(
    path: str | Path,
    gpus: list[str] | None = None,
    count: int | None = None,
    runs_dir: str | Path = "runs",
    root: str | None = None,
    offline: bool | None = None,
    extra_args: list[str] | None = None,
) -> int:
    """``make sweep``: online when W&B credentials exist, else offline. Returns an exit code."""
    check_count(count)
    if root:
        os.environ["MUSDB_PATH"] = str(Path(root).resolve())  # read by MUSDBDataModule
    if offline is None:
        offline = not wandb_online()
    if not offline:
        keep_sweep_copy(path, runs_dir)
        run_online(path, gpus, count)
        return 0
    outcome = run_offline(path, gpus, count, runs_dir, extra_args)
    return 1 if outcome.failed else 0
