"""The comparison report: table, seed aggregation, Wilcoxon tests and plots for tiny runs
whose folders are laid out as the sweep runner and ``ablation eval`` write them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from scipy.stats import wilcoxon

from ablation.report import ReportError, build_report, read_run

TRACKS = [f"track{i}" for i in range(8)]
# Per-track SDR of each target for each run: depth 3 is better than depth 2 on most tracks.
RNG = np.random.default_rng(0)
SDR = {
    "1d-depth2-seed0": RNG.normal(3.0, 1.0, size=(len(TRACKS), 2)),
    "1d-depth2-seed1": RNG.normal(3.2, 1.0, size=(len(TRACKS), 2)),
    "1d-depth3-seed0": RNG.normal(4.5, 1.0, size=(len(TRACKS), 2)),
}
TARGETS = ("vocals", "accompaniment")
STEPS = 30
BATCH = 4
SEGMENT = 1.0


def write_checkpoint(path: Path, depth: int):
    """A checkpoint as Lightning writes it for WaveUNetModule; returns the module."""
    from lightning_modules import WaveUNetModule

    module = WaveUNetModule(
        depth=depth, filters=4, segment=SEGMENT, sources=TARGETS, preset="wave-unet-m4"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "epoch": 2,
            "global_step": STEPS,
            "hyper_parameters": dict(module.hparams),
            "state_dict": module.state_dict(),
        },
        path,
    )
    return module


def write_evaluation(folder: Path, sdr: np.ndarray, baseline: str | None = None) -> None:
    """The files of an ``ablation eval`` folder that the report reads."""
    folder.mkdir(parents=True)
    manifest = {"baseline": baseline, "subset": "test", "root": "/data", "targets": list(TARGETS)}
    manifest["checkpoint"] = None if baseline else str(folder.parent / "last.ckpt")
    (folder / "evaluation.json").write_text(json.dumps(manifest))
    summary = {
        t: {"SDR": float(np.median(sdr[:, i])), "MSE": 0.01 * (i + 1)}
        for i, t in enumerate(TARGETS)
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    rows = [(track, t, sdr[k, i]) for k, track in enumerate(TRACKS) for i, t in enumerate(TARGETS)]
    pd.DataFrame(rows, columns=["track", "target", "SDR"]).to_csv(
        folder / "tracks.csv", index=False
    )


def write_run(sweep: Path, name: str, depth: int, seed: int, evaluated: bool = True):
    run = sweep / name
    module = write_checkpoint(run / "checkpoints" / "last.ckpt", depth)
    config = {
        "seed_everything": seed,
        "model": {"class_path": "lightning_modules.WaveUNetModule", "init_args": {"depth": depth}},
        "data": {"batch_size": BATCH, "root": "/data"},
        "run": {"dir": "runs", "sweep": sweep.name, "name": name},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    steps = np.arange(10, STEPS + 1, 10)
    log = pd.DataFrame({"step": steps, "val/loss": 0.01 / (steps * (depth + seed))})
    log.to_csv(run / "metrics.csv", index=False)
    summary = {
        "preset": "wave-unet-m4",
        "epochs": 3,
        "steps": STEPS,
        "train_seconds": 90.0,
        "peak_gpu_mem_gb": 0.5,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    if evaluated:
        write_evaluation(run / "checkpoints" / "last-eval-test", SDR[name])
    return run, module


@pytest.fixture(scope="module")
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
        macs = STEPS * net.macs_per_second(44100) * SEGMENT * BATCH
        assert row["training MACs"] == pytest.approx(macs)
        for i, target in enumerate(TARGETS):
            assert row[f"test SDR {target}"] == pytest.approx(np.median(SDR[name][:, i]))
            assert row[f"test MSE {target}"] == pytest.approx(0.01 * (i + 1))
        assert row["test SDR mean"] == pytest.approx(np.mean(np.median(SDR[name], axis=0)))
    assert table.loc["baseline mixture", "test SDR vocals"] == pytest.approx(-5.0)


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
    from ablation.evaluate import evaluate_checkpoint
    from ablation.sweep import run_sweep

    repo = Path(__file__).resolve().parents[1]
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
    assert fairness["data fingerprint"].nunique() == 1 and fairness["budget (s)"].nunique() == 1
    assert "All runs share" in report.read_text()
    for name in ["val_loss", "sdr_boxplot", "sdr_vs_depth", "sdr_vs_compute"]:
        assert (report.parent / f"{name}.png").exists(), name


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
