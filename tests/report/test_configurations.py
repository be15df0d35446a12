"""Configurations: seeds of one configuration aggregated as mean and std."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from .sweep_folders import SDR


def test_seeds_form_one_configuration_with_mean_and_std(report):
    path, _ = report
    table = pd.read_csv(path.parent / "runs.csv").set_index("run")
    assert table.loc["1d-depth2-seed0", "configuration"] == "1d depth2"
    assert table.loc["1d-depth2-seed1", "configuration"] == "1d depth2"
    assert table.loc["1d-depth3-seed0", "configuration"] == "1d depth3"
    configurations = pd.read_csv(path.parent / "configurations.csv", index_col=0)
    seeds = [np.median(SDR[f"1d-depth2-seed{s}"][:, 0]) for s in (0, 1)]
    row = configurations.loc["1d depth2"]
    assert row["seeds"] == 2
    assert row["test SDR vocals mean"] == pytest.approx(np.mean(seeds))
    assert row["test SDR vocals std"] == pytest.approx(np.std(seeds, ddof=1))
    assert "±" in path.read_text()
