"""The headline sentence and the flags of cells whose scores mean little."""

from __future__ import annotations

import pandas as pd

from ablation.report.configurations import aggregate_seeds
from ablation.report.verdict import flags, headline


def _table(steps: dict[str, int], sdr: dict[str, float]) -> pd.DataFrame:
    """A runs table: runs ``<configuration>-seed<k>`` with their steps, the gain baseline
    at ``sdr['baseline gain']``; every run of a configuration at its ``sdr``."""
    rows = [
        {"run": run, "configuration": run.rsplit("-", 1)[0], "seed": 0, "dimension": "1d",
         "depth": 2, "preset": None, "steps": n, "test SDR vocals": sdr[run.rsplit("-", 1)[0]],
         "test SDR bass": 5.0}
        for run, n in steps.items()
    ]  # fmt: skip
    rows.append({"run": "baseline gain", "configuration": "baseline gain",
                 "test SDR vocals": sdr["baseline gain"], "test SDR bass": 1.0})  # fmt: skip
    table = pd.DataFrame(rows)
    table["test SDR mean"] = table[["test SDR vocals", "test SDR bass"]].mean(axis=1)
    return table


def test_a_starved_run_and_a_cell_below_the_gain_baseline_are_flagged():
    steps = {"a-seed0": 400, "a-seed1": 380, "b-seed0": 8, "c-seed0": 50}
    table = _table(steps, {"a": 4.0, "b": 1.0, "c": 2.5, "baseline gain": 3.0})
    found = flags(table, aggregate_seeds(table), ["baseline gain"], ["vocals", "bass"])
    # b: 8 steps; c: 50 < a quarter of the median 215; b and c below the gain on vocals
    assert [f.split(" ")[0] for f in found] == ["b-seed0", "c-seed0", "b", "c"]
    assert "8 steps" in found[0] and "215" in found[1]
    assert "below baseline gain on vocals (1.00 < 3.00 dB)" in found[2]


def test_nothing_is_flagged_for_runs_of_equal_budgets_above_the_gain():
    table = _table({"a-seed0": 70, "b-seed0": 73}, {"a": 4.0, "b": 5.0, "baseline gain": 3.0})
    assert flags(table, aggregate_seeds(table), ["baseline gain"], ["vocals", "bass"]) == []


def test_the_headline_names_the_best_and_its_margin_over_the_best_baseline():
    table = _table({"a-seed0": 70}, {"a": 4.0, "baseline gain": 3.0})
    tracks = pd.DataFrame(
        [(c, c if c != "a" else "a-seed0", f"t{k}", "vocals", v + 0.1 * k)
         for c, v in (("a", 4.0), ("baseline gain", 3.0)) for k in range(8)],
        columns=["configuration", "run", "track", "target", "SDR"],
    )  # fmt: skip
    text = headline(aggregate_seeds(table), ["baseline gain"], tracks)
    assert text.startswith("Best: a, mean test SDR 4.50 dB, 2.50 dB above the best baseline")
    assert "median +1.00 dB [+1.00, +1.00] over 8 tracks" in text
