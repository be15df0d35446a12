"""Each family at its own best learning rate (issue 22): the tuning stage's choice, the
main grid taking it, the record and the report saying so."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import test_resume_and_errors
from test_resume_and_errors import fit_args

from ablation.cli import main
from ablation.report import build_report
from ablation.tuning import TuningError, tuned_rates, tuning_table

fit_env = test_resume_and_errors.fit_env
# best val/sdr per (dimension, depth, lr): the 1-D family prefers 1e-3 on average over
# its cells although its shallow cell prefers 3e-4; the 2-D family prefers 3e-4
TRIED = {
    ("1d", 3): {1e-4: 2.0, 3e-4: 4.0, 1e-3: 3.8},
    ("1d", 12): {1e-4: 1.0, 3e-4: 2.0, 1e-3: 3.0},
    ("2d", 2): {1e-4: 3.0, 3e-4: 5.0, 1e-3: 1.0},
    ("2d", 6): {1e-4: 2.5, 3e-4: 4.0, 1e-3: -2.0},
}


def write_tuning_runs(folder: Path) -> Path:
    for (dimension, depth), scores in TRIED.items():
        for lr, sdr in scores.items():
            run = folder / f"{dimension}-depth{depth}-lr{lr:g}-seed0"
            run.mkdir(parents=True)
            summary = {"dimension": dimension, "depth": depth, "best_val_sdr": sdr,
                       "fairness": {"settings": {"model.lr": lr}}}  # fmt: skip
            (run / "summary.json").write_text(json.dumps(summary))
    (folder / "1d-depth3-unfinished-seed0").mkdir()  # no summary: not counted
    return folder


def test_each_dimension_takes_the_rate_best_over_its_cells(tmp_path):
    folder = write_tuning_runs(tmp_path / "tune_lr")
    assert tuned_rates(folder) == {"1d": 1e-3, "2d": 3e-4}
    table = tuning_table(folder).set_index(["dimension", "lr"])
    assert table.loc[("1d", 1e-3), "mean best val/sdr"] == pytest.approx(3.4)
    assert table.loc[("1d", 3e-4), "mean best val/sdr"] == pytest.approx(3.0)
    assert table.loc[("1d", 1e-3), "cells"] == 2 and table.chosen.sum() == 2
    # 1d chose the largest rate tried, 2d one inside the grid
    assert table["at edge"].sum() == 1 and table.loc[("1d", 1e-3), "at edge"]
    with pytest.raises(TuningError, match="does not exist"):
        tuned_rates(tmp_path / "nowhere")


def test_the_main_grid_trains_at_its_familys_tuned_rate_and_records_it(fit_env, tmp_path, capsys):
    folder = write_tuning_runs(tmp_path / "tune_lr")
    main(fit_args(tmp_path, fit_env, "--run.budget_unit=steps", "--run.budget_steps=2",
                  f"--run.tuning={folder}"))  # fmt: skip
    run = tmp_path / "runs" / "adhoc" / "run"
    settings = json.loads((run / "summary.json").read_text())["fairness"]["settings"]
    assert settings["model.lr"] == 1e-3 and settings["lr_source"] == f"tuned: {folder}"
    said = capsys.readouterr().out
    assert "learning rate 0.001: the 1d rate the tuning runs" in said
    assert "the edge of the rates they tried" in said
    # the report puts the tuning table beside the results
    report = build_report([run], tmp_path / "out", "adhoc", wandb_log=False)
    assert "## Learning rates: the tuning stage" in report.read_text()
    assert "chosen, at the grid's edge: widen it" in report.read_text()
    tuning = pd.read_csv(tmp_path / "out" / "tuning.csv")
    chosen = tuning[tuning.chosen]
    assert sorted(zip(chosen.dimension, chosen.lr, strict=True)) == [("1d", 1e-3), ("2d", 3e-4)]


def test_without_tuning_runs_the_configured_rate_is_said_and_recorded(fit_env, tmp_path, capsys):
    main(fit_args(tmp_path, fit_env, "--run.budget_unit=steps", "--run.budget_steps=1"))
    run = tmp_path / "runs" / "adhoc" / "run"
    settings = json.loads((run / "summary.json").read_text())["fairness"]["settings"]
    assert settings["lr_source"] == "configured" and settings["model.lr"] == 3e-4
    assert "learning rate 0.0003: no tuning runs given" in capsys.readouterr().out
