"""The ranking at every budget: the report reads the budget-fraction checkpoints'
evaluations, draws SDR against budget and says whether the winner holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ablation.report import build_report
from ablation.report.budgets import ranking_across_budgets, ranking_statement

from .sweep_folders import TRACKS, write_evaluation, write_run

FRACTIONS = (0.125, 0.25, 0.5, 1.0)
# mean SDR per run at each fraction: depth 2 leads at 1/8, depth 3 from 1/4 on
CURVES = {
    "1d-depth2-seed0": (2.0, 2.5, 3.0, 3.2),
    "1d-depth3-seed0": (1.0, 3.0, 4.0, 5.0),
    "1d-depth4-seed0": (0.5, 1.0, 1.5, 2.0),
}


def test_the_report_draws_sdr_against_budget_from_the_fraction_checkpoints(tmp_path):
    sweep = tmp_path / "runs" / "depths"
    folders = []
    for name, curve in CURVES.items():
        run, _ = write_run(sweep, name, int(name[8]), 0, evaluated=False)
        for fraction, sdr in zip(FRACTIONS, curve, strict=True):
            scores = np.full((len(TRACKS), 2), sdr)
            write_evaluation(run / "checkpoints" / f"budget-{fraction:g}-eval", scores,
                             checkpoint=f"budget-{fraction:g}.ckpt")  # fmt: skip
        folders.append(run)
    report = build_report(folders, tmp_path / "out", "depths", wandb_log=False)
    budgets = pd.read_csv(tmp_path / "out" / "budgets.csv")
    assert len(budgets) == len(CURVES) * len(FRACTIONS)
    for name, curve in CURVES.items():
        rows = budgets[budgets.run == name].sort_values("fraction")
        assert list(rows.fraction) == list(FRACTIONS)
        assert rows["test SDR mean"].tolist() == pytest.approx(curve)
    assert (tmp_path / "out" / "sdr_vs_budget.png").stat().st_size > 1000
    text = report.read_text()
    assert "The winner changes with the budget (1/8: 1d depth2; 1/4: 1d depth3;" in text
    assert "sdr_vs_budget.png" in (tmp_path / "out" / "index.html").read_text()


def test_ranking_across_budgets_gives_the_winner_and_kendalls_tau():
    # full budget: A > B > C; at 1/8: B > A > C, one discordant pair of three
    rows = [("A", 1.0, 3.0), ("B", 1.0, 2.0), ("C", 1.0, 1.0),
            ("A", 0.125, 1.0), ("B", 0.125, 3.0), ("C", 0.125, 0.0)]  # fmt: skip
    table = pd.DataFrame(rows, columns=["configuration", "fraction", "test SDR mean"])
    ranking = ranking_across_budgets(table).set_index("fraction")
    assert ranking.loc[0.125, "winner"] == "B" and ranking.loc[1.0, "winner"] == "A"
    assert ranking.loc[0.125, "tau"] == pytest.approx(1 / 3)
    assert ranking.loc[1.0, "tau"] == pytest.approx(1.0)
    assert ranking.loc[0.125, "runner-up SDR"] == 1.0
    statement = ranking_statement(ranking.reset_index())
    assert statement.startswith("The winner changes with the budget (1/8: B; 1: A)")
    assert "1/8: 0.33" in statement
    held = table.assign(**{"test SDR mean": [3.0, 2.0, 1.0, 3.0, 1.0, 0.0]})
    assert ranking_statement(ranking_across_budgets(held)).startswith(
        "The winner holds across budgets: A is best at every evaluated fraction (1/8, 1)"
    )
