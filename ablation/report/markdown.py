"""``report.md``: the runs, fairness, configurations and significance tables, and the plots,
with numbers formatted for reading."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ablation.files import write_text
from ablation.report.budgets import ranking_readable, ranking_statement
from ablation.report.significance import MIN_TRACKS, ONE_SEED, smallest_p
from ablation.report.tables import in_target_order
from ablation.tables import markdown_table


def write_report(
    out: Path,
    name: str,
    table: pd.DataFrame,
    configurations: pd.DataFrame,
    pairs: pd.DataFrame,
    plots: list[Path],
    missing: list[str],
    fairness: str = "",
    over_seeds: pd.DataFrame | None = None,
    ranking: pd.DataFrame | None = None,
    tuning: pd.DataFrame | None = None,
    both: pd.DataFrame | None = None,
    verdict: tuple[str, list[str]] = ("", []),
) -> Path:
    """Write ``report.md`` (tables, fairness, significance, plots) beside the CSVs;
    ``verdict``: the headline sentence and the flags (:mod:`ablation.report.verdict`)."""
    headline, flagged = verdict
    lines = [
        f"# Report: {name}",
        "",
        f"**{headline}**",
        "",
        *([f"## {FLAGS_TITLE}", "", *(f"- {f}" for f in flagged), ""] if flagged else []),
        "Test figures: museval v4 (SiSEC 2018) on the test set, SDR in dB as the median "
        "over tracks of the median over 1 s frames; MSE over all test samples; "
        "val loss: the lowest logged; training FLOPs = steps x the measured FLOPs of a "
        "training step (forward and backward).",
        "",
        "## Runs",
        "",
        _runs_markdown(table),
        "",
        "## Fairness",
        "",
        fairness,
        "",
        "## Configurations (mean ± std over seeds)",
        "",
        _configurations_markdown(configurations),
        "",
        "## Significance: Wilcoxon signed-rank test on per-track SDR",
        "",
        _significance_markdown(pairs),
        "",
    ]
    if tuning is not None:
        lines += ["## Learning rates: the tuning stage", "", TUNING_NOTE, ""]
        lines += [markdown_table(tuning_readable(tuning)), ""]
    if ranking is not None:
        lines += ["## The ranking at every budget", "", ranking_statement(ranking), ""]
        lines += [markdown_table(ranking_readable(ranking)), ""] if not ranking.empty else []
    if over_seeds is not None and not over_seeds.empty:
        lines += ["## Significance over seeds: paired t-test, seed k against seed k", ""]
        lines += [_seeds_markdown(over_seeds), ""]
    lines += ["## Significance over tracks and seeds: two-way bootstrap", ""]
    lines += [_both_markdown(both, configurations), ""]
    if missing:
        lines += ["## Not evaluated", "", *(f"- {m}" for m in missing), ""]
    lines += [f"![{p.stem}]({p.name})" for p in plots]
    path = out / "report.md"
    write_text(path, "\n".join(lines) + "\n")
    return path


FLAGS_TITLE = "Flagged: scores that mean little"
TUNING_NOTE = (
    "Each dimension trains at the rate whose tuning runs reached the highest best val/sdr, "
    "averaged over the dimension's tuned cells (sweeps/tune_lr.yaml)."
)


def tuning_readable(tuning: pd.DataFrame) -> pd.DataFrame:
    """The tuning table for reading: the chosen rate of each dimension marked."""
    shown = tuning.copy()
    shown["chosen"] = [
        ("chosen, at the grid's edge: widen it" if edge else "chosen") if chosen else ""
        for chosen, edge in zip(shown.chosen, shown.pop("at edge"), strict=True)
    ]
    shown["mean best val/sdr"] = shown["mean best val/sdr"].map(lambda v: f"{v:.2f}")
    return shown.set_index("dimension")


def readable(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every cell formatted by :func:`fmt` (``test SDR`` columns in dB)."""
    out = df.astype(object)
    for column in out:
        decibels = str(column).startswith("test SDR")
        out[column] = [fmt(v, decibels) if v is not None else "–" for v in out[column]]
    return out


def fmt(value: Any, decibels: bool = False) -> str:
    """Numbers for reading: dB to 0.01 as SiSEC reports them, counts whole, large ones
    in powers of ten, others to 3 significant digits."""
    if not isinstance(value, int | float | np.number) or isinstance(value, bool):
        return str(value)
    if math.isnan(value):
        return "–"
    if decibels:
        return f"{value:.2f}"
    if abs(value) >= 1e6:
        return f"{value:.3g}"
    if float(value).is_integer() or abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _runs_markdown(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["configuration", "training FLOPs"]).set_index("run")
    return markdown_table(readable(shown.dropna(axis=1, how="all")))


def _configurations_markdown(configurations: pd.DataFrame) -> str:
    return markdown_table(configurations_readable(configurations))


def configurations_readable(
    configurations: pd.DataFrame, figures: list[str] | None = None
) -> pd.DataFrame:
    """Seeds, dimension, depth and preset, then each figure (every one with a value when
    ``figures`` is None) as ``mean ± std`` over seeds, formatted for reading."""
    if figures is None:
        figures = [c[: -len(" mean")] for c in configurations.columns if c.endswith(" mean")]
    shown = readable(configurations[["seeds", "dimension", "depth", "preset"]])
    for figure in figures:
        mean, std = configurations[f"{figure} mean"], configurations[f"{figure} std"]
        if mean.isna().all():
            continue
        db = figure.startswith("test SDR")
        shown[figure] = [
            fmt(m, db) if math.isnan(m) or math.isnan(s) else f"{fmt(m, db)} ± {fmt(s, db)}"
            for m, s in zip(mean, std, strict=True)
        ]
    return shown


WINNER_NOTE = (
    "Wilcoxon signed-rank test on per-track SDR (seeds averaged per track), as SiSEC 2018 "
    "compared entries: the median per-track difference a - b in dB with its 95 % "
    "bootstrap interval, p corrected over all pairs and targets (Benjamini-Hochberg), and "
    "the winner where p < 0.05."
)


def significance_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per pair of configurations and target (targets in the stems' order): the
    difference, its interval, the corrected p and the winner, formatted for reading (the
    pairs' own order: configurations as the report lists them, then the stems' order)."""
    few = too_few_tracks(pairs) is not None
    shown = pd.DataFrame(
        {
            "target": pairs.target,
            "a - b (dB)": [fmt(v, True) for v in pairs["median difference"]],
            "95 % interval": [
                f"[{fmt(lo, True)}, {fmt(hi, True)}]"
                for lo, hi in zip(pairs["ci low"], pairs["ci high"], strict=True)
            ],
            "p (BH)": ["–" if math.isnan(p) else f"{p:.4f}" for p in pairs["p BH"]],
            "winner": [_winner(row, few) for _, row in pairs.iterrows()],
        }
    )
    shown.index = [
        f"{a} vs {b} (n={n})" for a, b, n in zip(pairs.a, pairs.b, pairs.tracks, strict=True)
    ]
    shown.index.name = "pair (n paired tracks)"
    return shown


def _winner(row: pd.Series, too_few: bool) -> str:
    if too_few:
        return "none: too few tracks"
    if math.isnan(row["p BH"]) or row["p BH"] >= 0.05:
        return "none (p ≥ 0.05)"
    return row.a if row["median difference"] > 0 else row.b


def too_few_tracks(pairs: pd.DataFrame) -> str | None:
    """What to say instead of a winner when no pair has enough tracks for p < 0.05."""
    if pairs.empty or (pairs["smallest p"] < 0.05).any():
        return None
    n = int(pairs.tracks.max())
    return (
        f"Too few tracks: with {n} paired tracks the smallest possible p-value is "
        f"{smallest_p(n):.3g}, so no difference can be significant and no winner is named "
        f"(evaluate on at least {MIN_TRACKS} tracks)."
    )


def _significance_markdown(pairs: pd.DataFrame) -> str:
    if pairs.empty:
        return "Fewer than two evaluated configurations: nothing to compare."
    few = too_few_tracks(pairs)
    table = markdown_table(significance_table(pairs))
    return f"{WINNER_NOTE}\n\n" + (f"{few}\n\n" if few else "") + table


def _both_markdown(both: pd.DataFrame | None, configurations: pd.DataFrame) -> str:
    """The two-way bootstrap's table, or why there is none (one seed)."""
    if "seeds" in configurations and configurations.seeds.max() <= 1:
        return ONE_SEED
    if both is None or both.empty:
        return "No two configurations share two or more seeds: nothing to test over seeds."
    shown = both.assign(
        cell=[
            f"{fmt(m, True)} [{fmt(lo, True)}, {fmt(hi, True)}] (p {fmt(p)})"
            for m, lo, hi, p in zip(
                both["mean difference"], both["ci low"], both["ci high"], both.p, strict=True
            )
        ]
    )
    wide = shown.pivot_table(index=["a", "b"], columns="target", values="cell", aggfunc="first")
    wide.index = [f"{a} vs {b}" for a, b in wide.index]
    wide.index.name = "pair: mean a - b in dB over seeds and tracks [95 % interval] (p)"
    return markdown_table(wide[in_target_order(wide)])


def _seeds_markdown(over_seeds: pd.DataFrame) -> str:
    """Mean difference a - b over matched seeds (± std) and the corrected p, per target."""
    shown = over_seeds.assign(
        cell=[
            f"{fmt(m, True)} ± {fmt(sd, True)} (p BH {fmt(p)})"
            for m, sd, p in zip(
                over_seeds["mean difference"], over_seeds["std difference"],
                over_seeds["p BH"], strict=True,
            )
        ]
    )  # fmt: skip
    wide = shown.pivot_table(index=["a", "b"], columns="target", values="cell", aggfunc="first")
    seeds = over_seeds.groupby(["a", "b"], sort=False).seeds.max()
    wide.index = [f"{a} vs {b} (n={seeds[a, b]} seeds)" for a, b in wide.index]
    wide.index.name = "pair: mean a - b in dB over seeds ± std (p corrected, Benjamini-Hochberg)"
    return markdown_table(wide[in_target_order(wide)])
