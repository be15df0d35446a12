"""Each family at its own best learning rate, chosen by one procedure for both.

The tuning stage (``sweeps/tune_lr.yaml``) trains a shallow and a deep cell of each
dimension at several learning rates on a quarter of the budget. A dimension's rate is
the one whose runs reach the highest best ``val/sdr``, averaged over that
dimension's tuned cells (and seeds), so a rate that suits only the shallow net does
not win. The main grid takes each dimension's rate from those runs when pointed at
them (``--run.tuning=runs/tune_lr``), records where its rate came from, and the report
shows the tuning table beside the results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ablation.errors import AblationError
from ablation.files import read_json
from ablation.runs import SUMMARY

COLUMNS = ["dimension", "lr", "cells", "runs", "mean best val/sdr", "chosen", "at edge"]


class TuningError(AblationError):
    """Tuning runs that choose nothing, phrased for the user."""


def tuning_runs(folder: str | Path) -> list[dict[str, Any]]:
    """``(dimension, depth, lr, best val/sdr)`` of every finished run in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise TuningError(
            f"tuning runs folder {folder} does not exist: expected the runs of "
            f"sweeps/tune_lr.yaml, e.g. runs/tune_lr (make sweep SWEEP=sweeps/tune_lr.yaml)."
        )
    found = []
    for summary_path in sorted(folder.glob(f"*/{SUMMARY}")):
        summary = read_json(summary_path)
        lr = ((summary.get("fairness") or {}).get("settings") or {}).get("model.lr")
        if None in (summary.get("dimension"), lr, summary.get("best_val_sdr")):
            continue
        found.append(
            {
                "dimension": summary["dimension"],
                "depth": summary.get("depth"),
                "lr": float(lr),
                "best val/sdr": float(summary["best_val_sdr"]),
            }
        )
    return found


def tuning_table(folder: str | Path) -> pd.DataFrame:
    """Per dimension and rate: the cells and runs tried, their mean best ``val/sdr``,
    and whether the rate was chosen."""
    runs = pd.DataFrame(tuning_runs(folder), columns=["dimension", "depth", "lr", "best val/sdr"])
    if runs.empty:
        raise TuningError(
            f"no finished tuning run in {folder}: each run folder needs a summary.json with "
            f"its dimension, learning rate and best val/sdr; let sweeps/tune_lr.yaml finish."
        )
    # per cell first, so a cell with more seeds weighs no more than the others
    per_cell = runs.groupby(["dimension", "lr", "depth"])["best val/sdr"].agg(["mean", "size"])
    grouped = per_cell.groupby(level=["dimension", "lr"])
    table = pd.DataFrame(
        {
            "cells": grouped.size(),
            "runs": grouped["size"].sum(),
            "mean best val/sdr": grouped["mean"].mean(),
        }
    ).reset_index()
    best = table.groupby("dimension")["mean best val/sdr"].transform("max")
    table["chosen"] = table["mean best val/sdr"] == best
    # one chosen rate per dimension: of tied rates, the smallest
    table["chosen"] &= ~table.duplicated(["dimension", "chosen"]) | ~table.chosen
    # a chosen rate at the smallest or largest tried: the best may lie beyond the grid
    rates = table.groupby("dimension")["lr"]
    edge = (table.lr == rates.transform("min")) | (table.lr == rates.transform("max"))
    table["at edge"] = table.chosen & edge
    return table[COLUMNS]


def tuned_rates(folder: str | Path) -> dict[str, float]:
    """``{dimension: chosen learning rate}`` from the tuning runs in ``folder``."""
    table = tuning_table(folder)
    return {row.dimension: float(row.lr) for row in table[table.chosen].itertuples()}


def edge_rates(folder: str | Path) -> dict[str, float]:
    """``{dimension: chosen rate}`` of the dimensions whose rate is the smallest or the
    largest their tuning runs tried."""
    table = tuning_table(folder)
    return {row.dimension: float(row.lr) for row in table[table["at edge"]].itertuples()}


def tuned_rate(folder: str | Path, dimension: str) -> float:
    """The chosen rate of ``dimension``, or a :class:`TuningError` naming what is there."""
    rates = tuned_rates(folder)
    if dimension not in rates:
        raise TuningError(
            f"the tuning runs in {folder} tried no {dimension} cell (they tuned "
            f"{sorted(rates) or 'nothing'}): run sweeps/tune_lr.yaml's {dimension} cells, "
            f"or leave --run.tuning unset to train at the configured rate."
        )
    return rates[dimension]
