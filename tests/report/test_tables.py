"""The runs table: each run's figures read from its folder, and the baselines' rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .sweep_folders import FLOPS_PER_STEP, SDR, STEPS, TARGETS


def test_runs_table_has_each_runs_figures(report):
    path, runs = report
    table = pd.read_csv(path.parent / "runs.csv").set_index("run")
    for name, (_, module) in runs.items():
        row = table.loc[name]
        net = module.net
        assert row["parameters"] == sum(p.numel() for p in net.parameters())
        assert row["depth"] == net.depth and row["dimension"] == "1d"
        assert row["preset"] == "wave-unet-m4"
        assert row["receptive field (s)"] == pytest.approx(net.receptive_field_samples() / 44100)
        assert (row["epochs"], row["steps"]) == (3, STEPS)
        assert row["wall time (min)"] == pytest.approx(1.5)
        assert row["peak GPU mem (GB)"] == pytest.approx(0.5)
        assert row["val loss"] == pytest.approx(0.01 / (STEPS * (net.depth + int(name[-1]))))
        assert row["training FLOPs"] == STEPS * FLOPS_PER_STEP  # measured, not estimated
        for i, target in enumerate(TARGETS):
            assert row[f"test SDR {target}"] == pytest.approx(np.median(SDR[name][:, i]))
            assert row[f"test MSE {target}"] == pytest.approx(0.01 * (i + 1))
        assert row["test SDR mean"] == pytest.approx(np.mean(np.median(SDR[name], axis=0)))
    assert table.loc["baseline mixture", "test SDR vocals"] == pytest.approx(-5.0)


def test_stems_sort_in_one_order_whatever_order_they_come_in():
    """Tables, plots, players and tests all sort stems with target_rank: MUSDB18's names,
    then the others alphabetically (the README's order), never as a set happened to
    give them."""
    from ablation.report.significance import wilcoxon_pairs
    from ablation.report.tables import in_target_order, target_rank

    given = ["voice", "accompaniment", "piano", "vocals", "guitar"]
    expected = ["vocals", "accompaniment", "guitar", "piano", "voice"]
    assert sorted(given, key=target_rank) == expected
    assert in_target_order(reversed(given)) == expected
    rows = [
        (c, c, f"t{k}", t, float(k + (c == "a")))
        for t in ("voice", "piano", "guitar")
        for c in "ab"
        for k in range(3)
    ]
    tracks = pd.DataFrame(rows, columns=["configuration", "run", "track", "target", "SDR"])
    assert list(wilcoxon_pairs(tracks, ["a", "b"]).target) == ["guitar", "piano", "voice"]
