"""What the report says first: the headline sentence (the best configuration, by how much,
how sure) and the flags of cells whose scores mean little (too few steps, or below the
best-gain baseline)."""

from __future__ import annotations

import math

import pandas as pd

from ablation.report.significance import MIN_TRACKS, per_track_mean, wilcoxon_pairs

MEAN = "test SDR mean mean"  # the configurations table's mean over seeds of the mean SDR
# A run with fewer steps than the larger of these is flagged: one that got a quarter of
# what its sweep's runs got typically lost its budget to a busy machine, and one under 20
# optimizer steps is still near its initialisation; either way its scores rank the budget
# it got, not its architecture. (The demo's cells train about 70 steps by design.)
MIN_STEPS, MIN_SHARE_OF_MEDIAN = 20, 0.25
GAIN = "baseline gain"  # the best constant gain per target and track: the volume knob


def headline(configurations: pd.DataFrame, baselines: list[str], tracks: pd.DataFrame) -> str:
    """One sentence: the best configuration by mean test SDR, its margin over the
    runner-up (else the best baseline) and, from per-track SDR averaged over the
    targets, the median difference, its 95 % interval and the Wilcoxon p."""
    cells = configurations.drop(index=baselines, errors="ignore")[MEAN].dropna()
    if cells.empty:
        return "No configuration was evaluated: nothing to rank."
    ranked = cells.sort_values(ascending=False)
    best = ranked.index[0]
    others = configurations.loc[[c for c in baselines if c in configurations.index], MEAN]
    others = others.dropna()
    rival = ranked.index[1] if len(ranked) > 1 else others.idxmax() if len(others) else None
    said = f"Best: {best}, mean test SDR {ranked.iloc[0]:.2f} dB"
    if rival is None:
        return said + " (nothing else evaluated to compare with)."
    role = "the runner-up" if rival in ranked.index else "the best baseline,"
    margin = ranked.iloc[0] - configurations.loc[rival, MEAN]
    return f"{said}, {margin:.2f} dB above {role} {rival} ({_how_sure(tracks, best, rival)})."


def _how_sure(tracks: pd.DataFrame, best: str, rival: str) -> str:
    """The Wilcoxon test of ``best`` against ``rival`` on per-track SDR over targets."""
    pairs = wilcoxon_pairs(per_track_mean(tracks), [best, rival])
    if pairs.empty or not pairs.tracks.iloc[0]:
        return "no shared test tracks to test on"
    row = pairs.iloc[0]
    shift = f"per track: median {row['median difference']:+.2f} dB [{row['ci low']:+.2f}, "
    shift += f"{row['ci high']:+.2f}] over {row.tracks} tracks"
    if row["smallest p"] >= 0.05:
        return f"{shift}; too few tracks for any p below 0.05, evaluate on {MIN_TRACKS} or more"
    p = "–" if math.isnan(row.p) else f"{row.p:.2g}"
    verdict = "significant" if row.p < 0.05 else "not significant"
    return f"{shift}, Wilcoxon p = {p}: {verdict}"


def flags(
    table: pd.DataFrame, configurations: pd.DataFrame, baselines: list[str], targets: list[str]
) -> list[str]:
    """Cells whose scores mean little: runs that trained too few steps, and
    configurations scoring below the best-gain baseline on a target."""
    return _few_steps(table) + _below_gain(configurations, baselines, targets)


def _few_steps(table: pd.DataFrame) -> list[str]:
    steps = table.set_index("run").steps.dropna()
    if steps.empty:
        return []
    median = float(steps.median())
    least = max(MIN_STEPS, MIN_SHARE_OF_MEDIAN * median)
    return [
        f"{run} trained {n:.0f} steps, fewer than {least:.0f} (the larger of {MIN_STEPS} "
        f"and a quarter of the runs' median, {median:.0f}): its scores rank the budget it "
        f"got, not its architecture; train it again with the budget of the others"
        for run, n in steps.items()
        if n < least
    ]


def _below_gain(
    configurations: pd.DataFrame, baselines: list[str], targets: list[str]
) -> list[str]:
    if GAIN not in configurations.index:
        return []
    found = []
    for target in targets:
        column = f"test SDR {target} mean"
        if column not in configurations:
            continue
        floor = configurations.loc[GAIN, column]
        below = configurations[column].drop(index=baselines, errors="ignore").dropna()
        below = below[below < floor]
        found += [
            f"{c} scores below {GAIN} on {target} ({sdr:.2f} < {floor:.2f} dB): it separates "
            f"{target} worse than turning the mixture's volume"
            for c, sdr in below.items()
        ]
    return found
