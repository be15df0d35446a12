"""The report's fairness section: the runs that differ from the rest are named."""

from __future__ import annotations

import hashlib
import json

import pandas as pd
import pytest

from ablation.report import build_report

from .sweep_folders import write_run


def test_fairness_section_names_the_run_that_differs(tmp_path, capsys):
    sweep = tmp_path / "runs" / "depths"
    record = {"data_fingerprint": "ab" * 32, "budget_seconds": 90.0, "context_seconds": 0.9,
              "segment_seconds": 1.0, "data_seed": 0, "train_seconds": 90.2,
              "excluded_seconds": 4.0, "steps": 30, "real_context_fraction": 1.0}  # fmt: skip
    changes = {"1d-depth2-seed0": {}, "1d-depth2-seed1": {}, "1d-depth3-seed0": {}}
    changes["1d-depth3-seed0"] = {"data_fingerprint": "cd" * 32, "budget_seconds": 60.0}
    folders = []
    for name, change in changes.items():
        run, _ = write_run(sweep, name, int(name[8]), int(name[-1]), evaluated=False)
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "fairness": {**record, **change}}))
        folders.append(run)
    path = build_report(folders, tmp_path / "out", "depths", wandb_log=False)
    text = path.read_text()
    problems = [line for line in text.splitlines() if "differs from" in line]
    assert "## Fairness" in text and "Not comparable" in text
    assert any("1d-depth3-seed0: data fingerprint" in p for p in problems)
    assert any("1d-depth3-seed0: budget (s) 60.0" in p for p in problems)
    assert not any("seed1" in p or "1d-depth2-seed0:" in p for p in problems)
    assert "1d-depth3-seed0: data fingerprint" in capsys.readouterr().out  # printed too
    fairness = pd.read_csv(path.parent / "fairness.csv").set_index("run")
    assert fairness.loc["1d-depth2-seed1", "real context"] == 1.0
    # the same runs, all agreeing, get no complaint
    for run in folders:
        summary = json.loads((run / "summary.json").read_text())
        (run / "summary.json").write_text(json.dumps({**summary, "fairness": record}))
    text = build_report(folders, tmp_path / "out2", "depths", wandb_log=False).read_text()
    assert "All runs share" in text and "Not comparable" not in text
    # a run that stopped after fewer batches is compared on the batches it hashed
    digests = [f"{i:016x}" for i in range(32)]
    for run, count in zip(folders, (32, 32, 20), strict=True):
        summary = json.loads((run / "summary.json").read_text())
        fair = {**record, "data_fingerprint": str(count), "batch_digests": digests[:count]}
        (run / "summary.json").write_text(json.dumps({**summary, "fairness": fair}))
    text = build_report(folders, tmp_path / "out3", "depths", wandb_log=False).read_text()
    assert "All runs share" in text
    fair["batch_digests"] = ["f" * 16, *digests[1:20]]  # the last run saw other data
    (folders[-1] / "summary.json").write_text(json.dumps({**summary, "fairness": fair}))
    text = build_report(folders, tmp_path / "out4", "depths", wandb_log=False).read_text()
    assert "1d-depth3-seed0: data fingerprint (batches ffffffffffffffff" in text


def test_runs_share_their_data_with_the_runs_of_their_own_seed():
    from ablation.report.fairness import fairness_problems

    base = {"budget_seconds": 90.0, "context_seconds": 0.9, "segment_seconds": 1.0}
    stream = {0: {"data_fingerprint": "a" * 64, "data_seed": 0},
              1: {"data_fingerprint": "b" * 64, "data_seed": 1}}  # fmt: skip
    runs = {
        f"{cell}-seed{s}": s for cell in ("1d-depth2", "1d-depth3", "2d-depth2") for s in (0, 1)
    }
    records = {run: {**base, **stream[seed]} for run, seed in runs.items()}
    assert fairness_problems(records, runs) == []
    # without the seeds, seed 1's stream looks like other data
    assert len(fairness_problems(records, {})) == 6  # fingerprint and data seed, 3 runs each
    records["2d-depth2-seed1"] = {**records["2d-depth2-seed1"], "data_fingerprint": "c" * 64}
    records["1d-depth3-seed0"] = {**records["1d-depth3-seed0"], "budget_seconds": 60.0}
    problems = fairness_problems(records, runs)
    assert len(problems) == 2
    assert problems[0].startswith("2d-depth2-seed1: data fingerprint 'cccc")
    assert problems[1].startswith("1d-depth3-seed0: budget (s) 60.0")


# ---- the recipe and the machine (issue 20) -------------------------------------------------
SETTINGS = {"model.lr": 0.001, "trainer.precision": "bf16-mixed", "trainer.gradient_clip_val": 5.0,
            "optimizer": "AdamW", "data.batch_size": 16, "device": "NVIDIA H200",
            "torch": "2.14.1"}  # fmt: skip
BASE = {"budget_unit": "calibrated", "budget_seconds": 90.0, "context_seconds": 0.9,
        "segment_seconds": 1.0, "data_seed": 0}  # fmt: skip


def write_fairness(sweep, changes: dict[str, dict]) -> list:
    """Finished runs of ``sweep`` whose records hold :data:`SETTINGS` with ``changes``."""
    folders = []
    for name, change in changes.items():
        run, _ = write_run(sweep, name, int(name[8]), int(name[-1]), evaluated=False)
        summary = json.loads((run / "summary.json").read_text())
        fairness = {**BASE, "settings": {**SETTINGS, **change}}
        (run / "summary.json").write_text(json.dumps({**summary, "fairness": fairness}))
        folders.append(run)
    return folders


@pytest.mark.parametrize(
    "setting, value, column, label",
    [
        ("model.lr", 0.03, "learning rate", "0.03"),
        ("trainer.precision", "32-true", "precision", "'32-true'"),
        ("trainer.gradient_clip_val", 0.0, "gradient clipping", "0.0"),
        ("device", "NVIDIA RTX 3060", "device", "'NVIDIA RTX 3060'"),
    ],
)
def test_the_report_names_a_run_whose_recipe_or_machine_differs(
    tmp_path, setting, value, column, label
):
    changes = {f"1d-depth{d}-seed0": {} for d in (2, 3, 4)} | {"1d-depth5-seed0": {setting: value}}
    folders = write_fairness(tmp_path / "runs" / "depths", changes)
    text = build_report(folders, tmp_path / "out", "depths", wandb_log=False).read_text()
    problems = [line for line in text.splitlines() if "differs from" in line]
    assert problems == [f"- 1d-depth5-seed0: {column} {label} differs from the other runs' "
                        f"{SETTINGS[setting]!r}"]  # fmt: skip
    shown = pd.read_csv(tmp_path / "out" / "fairness.csv").set_index("run").loc[:, column]
    assert str(shown["1d-depth5-seed0"]) == str(value) != str(shown["1d-depth2-seed0"])


def test_what_the_sweep_varies_is_no_fairness_problem(tmp_path):
    sweep = tmp_path / "runs" / "lrs"
    changes = {"1d-depth2-seed0": {"model.lr": 0.0001}, "1d-depth3-seed0": {"model.lr": 0.001},
               "1d-depth4-seed0": {"model.lr": 0.01}}  # fmt: skip
    folders = write_fairness(sweep, changes)
    (sweep / "sweep.yaml").write_text(
        "parameters:\n  cell: {values: [1d-depth2]}\n  model.lr: {values: [0.0001, 0.001, 0.01]}\n"
    )
    text = build_report(folders, tmp_path / "out", "lrs", wandb_log=False).read_text()
    assert "All runs share" in text and "differs" not in text
    (sweep / "sweep.yaml").unlink()  # ad-hoc runs vary nothing on purpose
    text = build_report(folders, tmp_path / "out2", "lrs", wandb_log=False).read_text()
    assert "learning rate" in text and "Not comparable" in text


def test_the_fingerprint_shown_is_that_of_the_batches_every_run_hashed():
    from ablation.report.fairness import fairness_table

    digests = [f"{i:016x}" for i in range(32)]
    records = {
        "long": {"data_fingerprint": "A", "batch_digests": digests},
        "short": {"data_fingerprint": "B", "batch_digests": digests[:20]},
    }
    shown = fairness_table(records)["data fingerprint"]
    assert shown["long"] == shown["short"] not in ("A", "B")
    assert shown["long"] == hashlib.sha256("".join(digests[:20]).encode()).hexdigest()


def test_a_run_whose_outputs_saw_zeros_is_flagged():
    from ablation.report.fairness import fairness_problems

    records = {
        "2d-depth6-seed0": {**BASE, "real_context_fraction": 0.85},
        "2d-depth2-seed0": {**BASE, "real_context_fraction": 0.995},
        "1d-depth3-seed0": {**BASE, "real_context_fraction": 1.0},
    }
    problems = fairness_problems(records)
    assert len(problems) == 1 and problems[0].startswith(
        "2d-depth6-seed0: real context 0.850 below 0.99"
    )
