"""Per-track SDR and the Wilcoxon signed-rank tests between configurations, as SiSEC
2018 compared its entries."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd

from ablation.report.evaluations import Evaluation
from ablation.report.runs import Run
from ablation.report.tables import target_rank


def per_track_sdr(runs: list[Run], baselines: list[Evaluation]) -> pd.DataFrame:
    """Long table: configuration, run, track, target, SDR (median over frames)."""
    frames = []
    for label, run_name, evaluation in [
        *((r.configuration, r.name, r.evaluation) for r in runs if r.evaluation),
        *((b.label, b.label, b) for b in baselines),
    ]:
        long = evaluation.track_sdr.reset_index().melt(
            id_vars="track", var_name="target", value_name="SDR"
        )
        frames.append(long.assign(configuration=label, run=run_name))
    if not frames:
        return pd.DataFrame(columns=["configuration", "run", "track", "target", "SDR"])
    return pd.concat(frames, ignore_index=True)[["configuration", "run", "track", "target", "SDR"]]


def wilcoxon_pairs(tracks: pd.DataFrame, configurations: list[str]) -> pd.DataFrame:
    """Wilcoxon signed-rank test for each pair of configurations and each target.

    Per-track SDR is averaged over a configuration's seeds first; the test pairs
    the tracks both configurations scored (NaN tracks left out).

    Returns:
        Columns ``a``, ``b``, ``target``, ``tracks``, ``median difference`` (a - b, dB),
        ``p``.
    """
    from scipy.stats import wilcoxon

    means = tracks.groupby(["configuration", "target", "track"]).SDR.mean()
    rows = []
    for a, b in itertools.combinations(configurations, 2):
        for target in sorted(set(tracks.target), key=target_rank):
            try:
                paired = pd.concat([means[a][target], means[b][target]], axis=1).dropna()
            except KeyError:
                continue
            diff = paired.iloc[:, 0] - paired.iloc[:, 1]
            p = math.nan
            if len(diff) and np.any(diff != 0):
                p = float(wilcoxon(paired.iloc[:, 0], paired.iloc[:, 1]).pvalue)
            rows.append(
                (a, b, target, len(diff), float(diff.median()) if len(diff) else math.nan, p)
            )
    return pd.DataFrame(rows, columns=["a", "b", "target", "tracks", "median difference", "p"])
