"""Where a run lives and what it is called: shared by the CLI, the sweep runner and
the report, so that all three agree without importing Lightning.

A run folder ``runs/<sweep>/<run-name>/`` holds ``config.yaml`` (the resolved
LightningCLI config), ``checkpoints/last.ckpt`` and ``checkpoints/best-*.ckpt``,
``metrics.csv`` (every logged value), ``wandb/`` (the W&B run files, offline or
online), ``wandb_run.json`` (the W&B run's id, project and entity, so a resumed run
and a later evaluation log into the same W&B run) and, once training has ended
inside its budget, ``summary.json`` (final figures; its presence marks the run done);
``checkpoints/budget-<f>.ckpt`` are the run at fractions ``f`` of its budget. Beside a
sweep's run folders, ``sweep.yaml`` is the sweep as it ran and ``calibration.json`` the
step times of its ``calibrated`` budget.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import yaml

from ablation.files import read_json

SUMMARY = "summary.json"
# The run's resolved LightningCLI config, and its data (the resolved root and every track).
CONFIG = "config.yaml"
DATA = "data.json"
WANDB_RUN = "wandb_run.json"
LAST = "last.ckpt"
# The sweep YAML as the runner ran it, kept beside the sweep's runs (runs/<sweep>/).
SWEEP_COPY = "sweep.yaml"


def _slug(value: object) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", str(value)).strip("-")


def run_name(dimension: str, depth: int, seed: int, variants: Sequence[object] = ()) -> str:
    """A name that says what the run is, e.g. ``2d-depth5-complex-seed0``."""
    parts = [f"{dimension}-depth{depth}", *(_slug(v) for v in variants), f"seed{seed}"]
    return "-".join(p for p in parts if p)


def is_done(run_dir: Path) -> bool:
    return (Path(run_dir) / SUMMARY).exists()


def last_checkpoint(run_dir: Path) -> Path | None:
    path = Path(run_dir) / "checkpoints" / LAST
    return path if path.exists() else None


def budget_checkpoints(ckpt: str | Path) -> list[Path]:
    """The budget-fraction checkpoints (``budget-<f>.ckpt``) in the folder of ``ckpt``,
    smallest fraction first."""
    found = Path(ckpt).parent.glob("budget-*.ckpt")
    return sorted(found, key=lambda p: float(p.stem.removeprefix("budget-")))


def trained_root(ckpt: str | Path) -> tuple[str, Path] | None:
    """The data root the run of ``ckpt`` trained on, and that run's folder: ``data.json``'s
    resolved root, else ``config.yaml``'s ``data.root``, of the checkpoint's folder or the
    two above it; None when no run there recorded one."""
    for folder in list(Path(ckpt).resolve().parents)[:3]:
        root = read_json(folder / DATA).get("root")
        if root is None and (folder / CONFIG).is_file():
            config = yaml.safe_load((folder / CONFIG).read_text()) or {}
            root = (config.get("data") or {}).get("root")
        if root:
            return str(root), folder
    return None
