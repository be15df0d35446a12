"""Logging an evaluation to W&B: into the run that produced the checkpoint (offline runs
too), as ``test/<metric>/<target>`` summary values (another subset or settings under a
prefix of their own, :func:`wandb_prefix`), a per-track table and the box plot."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablation.constants import WANDB_PROJECT
from ablation.evaluation.aggregate import Results, number
from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import BACKENDS, METRICS
from ablation.files import read_json


@dataclass(frozen=True)
class WandbRun:
    """Where a checkpoint's training run logged: its id, project, entity and folder."""

    id: str | None
    project: str
    entity: str | None
    folder: Path | None


def find_wandb_run(ckpt: str | None) -> WandbRun:
    """Find the W&B run that produced ``ckpt``.

    Looks in the checkpoint's folder and up to two folders above it for the
    run folder's ``wandb_run.json`` (``{"id", "project", "entity"}``, written at
    the start of training), else for a ``wandb/`` folder of (offline) run
    directories, whose names end in the run id.
    """
    from ablation.runs import WANDB_RUN

    project = os.environ.get("WANDB_PROJECT", WANDB_PROJECT)
    if ckpt is None:
        return WandbRun(None, project, None, None)
    for folder in list(Path(ckpt).resolve().parents)[:3]:
        stored = read_json(folder / WANDB_RUN)
        if stored.get("id"):
            return WandbRun(
                stored["id"], stored.get("project") or project, stored.get("entity"), folder
            )
        runs = sorted((folder / "wandb").glob("*run-*-*")) if (folder / "wandb").is_dir() else []
        runs = [r for r in runs if r.is_dir() and not r.is_symlink()]
        if runs:
            return WandbRun(runs[-1].name.rsplit("-", 1)[-1], project, None, folder)
    return WandbRun(None, project, None, None)


def _run_name(plan: Plan) -> str:
    if plan.baseline:
        return f"baseline-{plan.baseline}-{plan.subset}"
    ckpt = Path(plan.ckpt)
    return f"eval-{ckpt.parent.parent.name}-{ckpt.stem}"


def wandb_prefix(plan: Plan) -> str:
    """The prefix of an evaluation's W&B keys: ``test`` for the test subset with the default
    backend and one pass; every other subset or setting its own (``eval_train``,
    ``test-shifts2``, ``test-museval``), so that no evaluation overwrites another's scores
    in the run's summary."""
    settings = [f"shifts{plan.shifts}"] if plan.shifts else []
    settings += [plan.metrics] if plan.metrics != BACKENDS[0] else []
    return "-".join(["test" if plan.subset == "test" else f"eval_{plan.subset}", *settings])


def log_to_wandb(plan: Plan, results: Results) -> str | None:
    """Log summary metrics, the per-track table and the box plot to W&B.

    Into the run that produced the checkpoint when it is found (offline runs
    too), else into a new run named after the checkpoint or baseline. A
    baseline always gets its own run, so it never overwrites a model's scores.

    Returns:
        The W&B run id.
    """
    import wandb

    from ablation.wandb_mode import wandb_online

    found = find_wandb_run(None if plan.baseline else plan.ckpt)
    prefix = wandb_prefix(plan)
    # Without credentials the run is written offline, to be synced later (`wandb sync`).
    mode = "disabled" if os.environ.get("WANDB_MODE") == "disabled" else "offline"
    init: dict[str, Any] = {
        "project": found.project,
        "entity": found.entity,
        "job_type": "eval",
        "dir": os.environ.get("WANDB_DIR") or str(found.folder or plan.out),
        "mode": None if wandb_online() else mode,
    }
    if found.id:
        init.update(id=found.id, resume="allow")
    else:
        init.update(
            name=_run_name(plan), config={"checkpoint": plan.ckpt, "baseline": plan.baseline}
        )
    run = wandb.init(**init)
    metrics = {}
    for target, row in results.median.iterrows():
        for metric in (*METRICS, "MSE"):
            metrics[f"{prefix}/{metric.lower()}/{target}"] = number(row[metric])
    own = results.median.loc[[s for s in plan.sources if s in results.median.index], "SDR"]
    metrics[f"{prefix}/sdr/mean"] = number(own.mean())
    run.summary.update(metrics)
    run.log(
        {
            f"{prefix}/tracks": wandb.Table(dataframe=results.tracks),
            f"{prefix}/sdr_boxplot": wandb.Image(str(Path(plan.out) / "sdr_boxplot.png")),
        }
    )
    run.finish()
    return run.id
