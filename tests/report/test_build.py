"""build_report end to end: the files it writes, runs it cannot report on, a real tiny sweep."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from ablation.report import ReportError, build_report, read_run

from .sweep_folders import write_run


def test_report_writes_markdown_csv_and_plots(report):
    path, _ = report
    out = path.parent
    for name in ["runs.csv", "configurations.csv", "significance.csv", "tracks.csv"]:
        assert (out / name).stat().st_size > 0, name
    for name in ["val_loss", "sdr_boxplot", "sdr_vs_depth", "sdr_vs_compute"]:
        assert (out / f"{name}.png").read_bytes()[:4] == b"\x89PNG", name
        assert f"![{name}]({name}.png)" in path.read_text()
    text = path.read_text()
    assert "## Runs" in text and "1d-depth3-seed0" in text and "baseline mixture" in text
    # the headline first, and one significance table with the winner of each target
    assert text.split("\n")[2].startswith("**Best: 1d depth3, mean test SDR ")
    assert (
        "| pair (n paired tracks) | target | a - b (dB) | 95 % interval | p (BH) | winner |" in text
    )


def test_a_run_without_evaluation_is_listed_with_the_command_to_run(tmp_path):
    run, _ = write_run(tmp_path / "runs" / "s", "1d-depth2-seed0", 2, 0, evaluated=False)
    path = build_report([run], tmp_path / "out", "s", wandb_log=False)
    assert f"make eval CKPT={run / 'checkpoints' / 'last.ckpt'}" in path.read_text()
    assert read_run(run).evaluation is None


def test_missing_folders_are_explained(tmp_path):
    with pytest.raises(ReportError, match="missing: .*nowhere"):
        build_report([tmp_path / "nowhere"], tmp_path / "out", "x", wandb_log=False)
    with pytest.raises(ReportError, match="no folders given"):
        build_report([], tmp_path / "out", "x", wandb_log=False)


@pytest.mark.slow
def test_report_of_a_real_tiny_sweep(toy_root, tmp_path, monkeypatch):
    """Two cells trained by the sweep runner, evaluated with SiSEC's protocol, reported."""
    from ablation.evaluation import evaluate_checkpoint
    from ablation.sweep import run_sweep

    repo = Path(__file__).resolve().parents[2]
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("ABLATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(repo)
    base = str(repo / "sweeps" / "demo_base.yaml")
    sweep = {
        "name": "tiny",
        "program": "ablation",
        "method": "grid",
        "command": ["${env}", "${interpreter}", "-m", "ablation", "fit", "--config", base,
                    "--run.sweep=tiny", "${args}"],
        "parameters": {
            "cell": {"values": ["1d-depth2", "1d-depth3"]},
            "model.filters": {"value": 4},
            "seed_everything": {"value": 0},
            "trainer.max_time": {"value": "00:00:00:06"},
        },
    }  # fmt: skip
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(sweep))
    runs = tmp_path / "runs"
    assert run_sweep(tmp_path / "tiny.yaml", runs_dir=runs, root=str(toy_root), offline=True) == 0
    folders = sorted((runs / "tiny").iterdir())
    for folder in folders:
        ckpt = folder / "checkpoints" / "last.ckpt"
        evaluate_checkpoint(str(ckpt), str(toy_root), jobs=1, wandb_log=False, progress=False)
    baseline = evaluate_checkpoint(
        None, str(toy_root), baseline="mixture", out=str(tmp_path / "mixture"), wandb_log=False
    )
    report = build_report([*folders, baseline], tmp_path / "report", "tiny", wandb_log=False)
    table = pd.read_csv(report.parent / "runs.csv").set_index("run")
    assert len(table) == 3
    for folder in folders:
        row = table.loc[folder.name]
        assert row["steps"] > 0 and row["parameters"] > 0 and np.isfinite(row["val loss"])
        assert np.isfinite(row["test SDR vocals"]) and np.isfinite(row["test MSE vocals"])
    assert list(table.configuration[:2]) == ["1d depth2", "1d depth3"]
    # two cells of one sweep trained on the same bytes under the same budget
    fairness = pd.read_csv(report.parent / "fairness.csv").set_index("run")
    # (whole-run fingerprints differ when cells hashed different numbers of batches within
    # their time budget: the check compares the batches both saw)
    assert fairness["budget (s)"].nunique() == 1 and fairness["context (s)"].nunique() == 1
    assert "All runs share" in report.read_text()
    for name in ["val_loss", "sdr_boxplot", "sdr_vs_depth", "sdr_vs_compute"]:
        assert (report.parent / f"{name}.png").exists(), name
