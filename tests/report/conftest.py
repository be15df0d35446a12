"""The report of three tiny runs (two seeds of one configuration) and a baseline."""

from __future__ import annotations

import numpy as np
import pytest

from ablation.report import build_report

from .sweep_folders import SDR, TRACKS, write_evaluation, write_run


@pytest.fixture(scope="package")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    sweep = root / "runs" / "depths"
    runs = {}
    for name in SDR:
        depth, seed = int(name[8]), int(name[-1])
        runs[name] = write_run(sweep, name, depth, seed)
    baseline = root / "results" / "baselines" / "mixture-test"
    write_evaluation(baseline, np.full((len(TRACKS), 2), -5.0), baseline="mixture")
    path = build_report(
        [runs[n][0] for n in SDR] + [baseline],
        root / "results" / "depths",
        "depths",
        wandb_log=False,
    )
    return path, runs
