"""The ranking at every budget: test SDR of the budget-fraction checkpoints.

Every run keeps its checkpoint at fractions of its budget (``budget-0.125.ckpt`` ...,
see :mod:`lightning_modules.budget`); evaluated, they give each configuration's SDR
at an eighth, a quarter, half and all of the budget from one run. This module
tabulates them, draws SDR against budget, and says whether the ranking of the
configurations holds: the winner at each budget and Kendall's rank correlation of
each budget's ranking with the full budget's.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from ablation.report.runs import Run
from ablation.report.tables import own_targets

COLUMNS = ["run", "configuration", "dimension", "fraction", "test SDR mean"]


def budget_table(runs: list[Run]) -> pd.DataFrame:
    """One row per run and evaluated budget fraction: the mean test SDR over the run's
    own targets (the report's ``test SDR mean``)."""
    rows = []
    for run in runs:
        for fraction, evaluation in run.budget_evaluations.items():
            summary = evaluation.summary
            values = [summary[t].get("SDR") for t in own_targets(summary)]
            values = [v for v in values if v is not None and not math.isnan(v)]
            if values:
                sdr = float(np.mean(values))
                rows.append([run.name, run.configuration, run.dimension, fraction, sdr])
    return pd.DataFrame(rows, columns=COLUMNS)


def by_configuration(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds: index configuration, one column per fraction."""
    return table.pivot_table(
        index="configuration", columns="fraction", values="test SDR mean", aggfunc="mean"
    )


def ranking_across_budgets(table: pd.DataFrame) -> pd.DataFrame:
    """Per fraction: the winner, its SDR, the runner-up's, and Kendall's tau between the
    ranking at that fraction and at the full (largest) fraction, over the configurations
    evaluated at both."""
    wide = by_configuration(table)
    if wide.empty:
        return pd.DataFrame(columns=["fraction", "winner", "winner SDR", "runner-up SDR", "tau"])
    full = wide.columns.max()
    rows = []
    for fraction in wide.columns:
        scores = wide[fraction].dropna().sort_values(ascending=False)
        both = wide[[fraction, full]].dropna()
        tau = kendalltau(both[fraction], both[full]).statistic if len(both) > 1 else math.nan
        rows.append(
            {
                "fraction": fraction,
                "winner": scores.index[0],
                "winner SDR": scores.iloc[0],
                "runner-up SDR": scores.iloc[1] if len(scores) > 1 else math.nan,
                "tau": tau,
            }
        )
    return pd.DataFrame(rows)


def ranking_statement(ranking: pd.DataFrame) -> str:
    """One sentence: does the ranking hold across budgets, and how closely."""
    if ranking.empty:
        return (
            "No budget-fraction checkpoint was evaluated: `ablation eval --budgets` (or "
            "`make eval BUDGETS=1`) scores them."
        )
    winners = list(dict.fromkeys(ranking.winner))
    taus = ", ".join(
        f"{fraction_label(r.fraction)}: {r.tau:.2f}"
        for r in ranking.itertuples()
        if not math.isnan(r.tau)
    )
    correlation = f" Kendall's tau with the full budget's ranking: {taus}." if taus else ""
    if len(winners) == 1:
        return (
            f"The winner holds across budgets: {winners[0]} is best at every evaluated "
            f"fraction ({', '.join(fraction_label(f) for f in ranking.fraction)}).{correlation}"
        )
    changes = "; ".join(f"{fraction_label(r.fraction)}: {r.winner}" for r in ranking.itertuples())
    return f"The winner changes with the budget ({changes}).{correlation}"


def fraction_label(fraction: float) -> str:
    """``0.125`` -> ``1/8``; a fraction that is no unit fraction as a number."""
    inverse = 1 / fraction
    return "1" if fraction == 1 else f"1/{inverse:g}" if inverse.is_integer() else f"{fraction:g}"


def ranking_readable(ranking: pd.DataFrame) -> pd.DataFrame:
    """The ranking table for reading: fractions as ``1/8``, SDR and tau to 2 decimals."""
    shown = ranking.copy()
    shown["fraction"] = shown.fraction.map(fraction_label)
    for column in ("winner SDR", "runner-up SDR", "tau"):
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    return shown.set_index("fraction")
