"""The runs table: one row per run, then per baseline, with every figure the report shows."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ablation.constants import SOURCES
from ablation.report.evaluations import Evaluation
from ablation.report.runs import Run

TARGET_ORDER = (*SOURCES, "accompaniment")
RUN_COLUMNS = (
    "run",
    "configuration",
    "seed",
    "dimension",
    "depth",
    "preset",
    "parameters",
    "receptive field (s)",
    "epochs",
    "steps",
    "wall time (min)",
    "peak GPU mem (GB)",
    "training FLOPs",
    "val loss",
)


def target_rank(target: str) -> tuple[int, str]:
    """Sort key of the one stem order of every table, plot and player: the position of
    ``target`` in :data:`TARGET_ORDER`, then others (any dataset's stems) by name, as the
    data orders its stems (a position alone would leave guitar, piano and voice in
    whatever order a set gave them)."""
    rank = TARGET_ORDER.index(target) if target in TARGET_ORDER else len(TARGET_ORDER)
    return rank, target


def in_target_order(names) -> list[str]:
    """``names`` in the order of :func:`target_rank`."""
    return sorted(set(names), key=target_rank)


def targets(runs: list[Run], baselines: list[Evaluation]) -> list[str]:
    """Every target an evaluation scored, in :data:`TARGET_ORDER`, then others by name."""
    found = {t for r in runs if r.evaluation for t in r.evaluation.summary}
    found |= {t for b in baselines for t in b.summary}
    return in_target_order(found)


def runs_table(runs: list[Run], baselines: list[Evaluation], targets: list[str]) -> pd.DataFrame:
    """One row per run (then per baseline): the columns the issue asks for."""
    rows = []
    for run in runs:
        rows.append(
            {
                "run": run.name,
                "configuration": run.configuration,
                "seed": run.seed,
                "dimension": run.dimension,
                "depth": run.depth,
                "preset": run.preset,
                "parameters": run.parameters,
                "receptive field (s)": run.receptive_field_s,
                "epochs": run.epochs,
                "steps": run.steps,
                "wall time (min)": None if run.wall_time_s is None else run.wall_time_s / 60,
                "peak GPU mem (GB)": run.peak_gpu_mem_gb,
                "training FLOPs": run.train_flops,
                "val loss": run.val_loss,
                **_test_columns(run.evaluation, targets),
            }
        )
    for baseline in baselines:
        rows.append(
            {"run": baseline.label, "configuration": baseline.label}
            | _test_columns(baseline, targets)
        )
    columns = [*RUN_COLUMNS, *_test_columns(None, targets)]
    return pd.DataFrame(rows).reindex(columns=columns)


def _test_columns(evaluation: Evaluation | None, targets: list[str]) -> dict[str, float]:
    row: dict[str, float] = {}
    summary = evaluation.summary if evaluation else {}
    for metric in ("MSE", "SDR"):
        for target in targets:
            value = summary.get(target, {}).get(metric)
            row[f"test {metric} {target}"] = math.nan if value is None else value
    values = [row[f"test SDR {t}"] for t in own_targets(summary) if f"test SDR {t}" in row]
    values = [v for v in values if not math.isnan(v)]
    row["test SDR mean"] = float(np.mean(values)) if values else math.nan
    return row


def own_targets(scored) -> list[str]:
    """The estimator's own targets among those ``scored``, which SDR means average: a
    four-stem model's derived accompaniment would count its stems twice."""
    scored = list(scored)
    return [t for t in scored if t != "accompaniment" or not set(SOURCES) <= set(scored)]


def scores_table(runs: list[Run], baselines: list[Evaluation]) -> pd.DataFrame:
    """Every figure of every evaluation summary (SDR, ISR, SIR, SAR, MSE per target):
    one row per run or baseline, columns ``<metric> <target>``."""
    rows = {r.name: r.evaluation.summary for r in runs if r.evaluation}
    rows |= {b.label: b.summary for b in baselines}
    wide = {
        name: {f"{m} {t}": v for t in sorted(s, key=target_rank) for m, v in s[t].items()}
        for name, s in rows.items()
    }
    return pd.DataFrame.from_dict(wide, orient="index").rename_axis("run")
