"""The Wilcoxon signed-rank tests on per-track SDR, seeds averaged per track."""

from __future__ import annotations

import pandas as pd
import pytest
from scipy.stats import wilcoxon

from .sweep_folders import SDR, TARGETS


def test_wilcoxon_p_values_pair_tracks_with_seeds_averaged(report):
    path, _ = report
    pairs = pd.read_csv(path.parent / "significance.csv")
    assert set(zip(pairs.a, pairs.b, strict=True)) == {("1d depth2", "1d depth3")}
    for i, target in enumerate(TARGETS):
        depth2 = (SDR["1d-depth2-seed0"][:, i] + SDR["1d-depth2-seed1"][:, i]) / 2
        expected = wilcoxon(depth2, SDR["1d-depth3-seed0"][:, i]).pvalue
        (p,) = pairs[pairs.target == target].p
        assert p == pytest.approx(expected)
    assert "1d depth2 vs 1d depth3 (n=8)" in path.read_text()
