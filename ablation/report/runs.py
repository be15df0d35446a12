"""Reading one run folder (``runs/<sweep>/<run>/``, see :mod:`ablation.runs`).

A run folder is read defensively: whatever of these it has is used, and what is
missing shows as an empty cell.

- ``config.yaml``: the run's configuration (its seed and what the sweep varied);
- ``checkpoints/last.ckpt`` (else any ``.ckpt``): the net, rebuilt from its
  ``net_config`` to count parameters, receptive field and MACs; epochs and steps;
- ``summary.json``, written when training ended inside its budget: epochs and
  steps done, training wall time, the measured training FLOPs, the budget unit, peak
  GPU memory (preferred to the checkpoint's);
- ``metrics.csv`` (the CSV log): the validation loss curve, its lowest value;
- evaluation folders of ``ablation eval`` below the run (found by their
  ``evaluation.json``; ``best*`` checkpoints preferred, then ``last``): test SDR
  and MSE per source, per-track SDR; those of ``budget-<f>.ckpt`` give the SDR at
  each fraction of the budget.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from ablation.constants import VAL_LOSS
from ablation.report.evaluations import Evaluation, find_evaluations, pick_evaluation, read_object
from ablation.runs import SUMMARY

PEAK_GPU_MEM = "perf/peak_gpu_mem_gb"
BUDGET_CHECKPOINT = re.compile(r"budget-([0-9.]+)\.ckpt")


@dataclass
class Run:
    """What the report knows of one run; None where the run folder does not say."""

    name: str
    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    seed: Any = None
    dimension: str | None = None
    depth: int | None = None
    preset: str | None = None
    parameters: int | None = None
    receptive_field_s: float | None = None
    macs_per_second: float | None = None
    segment_s: float | None = None
    batch_size: int | None = None
    epochs: int | None = None
    steps: int | None = None
    wall_time_s: float | None = None
    peak_gpu_mem_gb: float | None = None
    val_loss: float | None = None
    val_curve: pd.DataFrame | None = None
    evaluation: Evaluation | None = None
    configuration: str = ""
    # measured: steps x FLOPs of a training step (forward and backward, every rank)
    train_flops: float | None = None
    budget_unit: str | None = None
    # test evaluations of the budget-fraction checkpoints, by fraction of the budget
    budget_evaluations: dict[float, Evaluation] = field(default_factory=dict)


def read_run(folder: Path) -> Run:
    """Read what a run folder holds (see the module docstring)."""
    run = Run(name=folder.name, folder=folder)
    if (folder / "config.yaml").exists():
        run.config = flatten(yaml.safe_load((folder / "config.yaml").read_text()) or {})
    seeds = seed_keys(run.config)
    run.seed = run.config[seeds[0]] if seeds else None
    run.preset = _by_last_key(run.config, "preset")
    run.batch_size = _by_last_key(run.config, "batch_size")
    _read_checkpoint(run)
    _read_logs(run)
    evaluations = find_evaluations(folder)
    run.evaluation = pick_evaluation(evaluations)
    run.budget_evaluations = budget_evaluations(evaluations)
    return run


def budget_evaluations(evaluations: list[Evaluation]) -> dict[float, Evaluation]:
    """The test evaluations of ``checkpoints/budget-<f>.ckpt``, by fraction ``f``."""
    found = {}
    for evaluation in evaluations:
        name = Path(evaluation.manifest.get("checkpoint") or "").name
        match = BUDGET_CHECKPOINT.fullmatch(name)
        if match and evaluation.manifest.get("subset", "test") == "test":
            found[float(match[1])] = evaluation
    return dict(sorted(found.items()))


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts to ``{"a.b.c": leaf}``; lists are leaves (as strings when nested)."""
    if not isinstance(tree, dict):
        return {prefix: tree if not isinstance(tree, list | dict) else json.dumps(tree)}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def seed_keys(config: dict[str, Any]) -> list[str]:
    """The keys of a flattened config that hold a seed."""
    return [k for k in config if k.rsplit(".", 1)[-1] in ("seed", "seed_everything")]


def _by_last_key(config: dict[str, Any], name: str) -> Any:
    return next((v for k, v in config.items() if k.rsplit(".", 1)[-1] == name), None)


def checkpoint_file(folder: Path) -> Path | None:
    """The run's ``checkpoints/last.ckpt``, else its first checkpoint, else None."""
    checkpoints = sorted((folder / "checkpoints").glob("*.ckpt")) if folder.is_dir() else []
    last = [c for c in checkpoints if c.name == "last.ckpt"]
    return (last or checkpoints or [None])[0]


def _read_checkpoint(run: Run) -> None:
    from ablation.checkpoint import CheckpointError, build_net, read_checkpoint

    path = checkpoint_file(run.folder)
    if path is None:
        return
    try:
        checkpoint = read_checkpoint(path)
        net = build_net(checkpoint, path)
    except CheckpointError as error:
        warnings.warn(f"{path}: net figures skipped ({error})", stacklevel=2)
        return
    rate = net.sample_rate
    figures = net.describe(rate)
    run.dimension = figures["dimension"]
    run.depth = figures["depth"]
    run.parameters = figures["parameters"]
    run.receptive_field_s = figures["receptive_field_samples"] / rate
    run.macs_per_second = figures["macs_per_second"]
    run.segment_s = net.segment_seconds
    # A checkpoint written at the end of epoch e holds epoch=e (0-based): e + 1 done.
    run.epochs = checkpoint.get("epoch", -1) + 1 if "epoch" in checkpoint else None
    run.steps = checkpoint.get("global_step")


def _metrics_csv(folder: Path) -> pd.DataFrame | None:
    paths = sorted(folder.rglob("metrics.csv"))
    if not paths:
        return None
    return pd.concat([pd.read_csv(p) for p in paths], ignore_index=True)


def _read_logs(run: Run) -> None:
    metrics = _metrics_csv(run.folder)
    if metrics is not None and VAL_LOSS in metrics:
        x = "step" if "step" in metrics else metrics.columns[0]
        curve = metrics[[x, VAL_LOSS]].dropna().rename(columns={x: "step", VAL_LOSS: "val_loss"})
        run.val_curve = curve.sort_values("step").reset_index(drop=True)
        run.val_loss = float(curve.val_loss.min()) if len(curve) else None
    if metrics is not None and PEAK_GPU_MEM in metrics:
        run.peak_gpu_mem_gb = float(metrics[PEAK_GPU_MEM].max())
    summary = read_object(run.folder / SUMMARY) or {}
    run.wall_time_s = _first(summary, "train_seconds", "wall_time_s")
    fields = ("peak_gpu_mem_gb", "epochs", "steps", "preset", "dimension", "depth")
    for name in (*fields, "train_flops", "budget_unit"):
        value = summary.get(name)
        if value is not None:
            setattr(run, name, value)
    if run.val_loss is None:
        run.val_loss = summary.get("val_loss")


def _first(mapping: dict, *keys: str) -> Any:
    return next((mapping[k] for k in keys if mapping.get(k) is not None), None)
