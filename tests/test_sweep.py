"""Sweep YAMLs, the offline runner, resume within the budget, the online command lines."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ablation.arguments import expand_cell, model_arguments, model_variants, parse_cell
from ablation.constants import MONITOR
from ablation.runs import is_done, run_name
from ablation.sweep import SweepError, cell_run_dir, command, grid, load_sweep, run_sweep

REPO = Path(__file__).resolve().parents[1]
SWEEP_FILES = sorted(
    p for p in (REPO / "sweeps").glob("*.yaml") if "method" in yaml.safe_load(p.read_text())
)
TINY = dict(model_filters=4, budget="00:00:00:06")


def independent_grid(config: dict) -> list[dict]:
    params = config["parameters"]
    names = list(params)
    choices = [p["values"] if "values" in p else [p["value"]] for p in params.values()]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*choices)]


def test_sweep_files_exist():
    names = {p.stem for p in SWEEP_FILES}
    assert {"depth_dimension", "seed_paper", "phase", "loss", "demo"} <= names


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_sweep_yaml_is_valid_and_expands_to_its_grid(path):
    config = load_sweep(path)  # W&B's own schema
    assert config["metric"]["name"] == MONITOR and config["metric"]["goal"] == "maximize"
    cells = grid(config)
    expected = independent_grid(config)

    def key(cell):  # a grid is a set of runs; the engine lists parameters by name
        return json.dumps(cell, sort_keys=True)

    assert sorted(map(key, cells)) == sorted(map(key, expected))
    assert all(
        "." not in k or "parameters" not in config["parameters"][k] for k in config["parameters"]
    )
    # every run names the same seed and the same budget (the fairness rule)
    assert len({c["seed_everything"] for c in cells}) == 1
    assert len({c["trainer.max_time"] for c in cells}) == 1


def test_main_grid_cells_and_budget():
    cells = grid(load_sweep(REPO / "sweeps" / "depth_dimension.yaml"))
    assert sorted(parse_cell(c["cell"]) for c in cells) == sorted(
        [("1d", d) for d in (3, 6, 9, 12)] + [("2d", d) for d in (2, 3, 4, 5, 6)]
    )
    assert {c["trainer.max_time"] for c in cells} == {"00:03:00:00"}


def covering(runs: list[dict]) -> list[dict]:
    """The runs that bring a parameter value no earlier run had: every value of every
    parameter is parsed once, without parsing every combination of a large grid."""
    seen, kept = set(), []
    for run in runs:
        values = {(k, json.dumps(v)) for k, v in run.items()}
        if values - seen:
            kept.append(run)
            seen |= values
    return kept


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_every_run_command_parses_in_the_cli(path, tmp_path, monkeypatch):
    from lightning_modules.lightning_cli import AblationCLI

    monkeypatch.chdir(REPO)
    config = load_sweep(path)
    for params in covering(grid(config)):
        argv = command(config, params)
        assert argv[:4] == [sys.executable, "-m", "ablation", "fit"]
        cli = AblationCLI(expand_cell(argv[4:] + [f"--run.dir={tmp_path}"]), run=False)
        dimension, depth = parse_cell(params["cell"])
        assert cli.model.net.dimension == dimension and cli.model.net.config["depth"] == depth
        assert cli.config.trainer.max_time == params["trainer.max_time"]
        for key, value in params.items():
            if key.startswith("model."):
                parsed = cli.config.model.init_args[key.split(".", 1)[1]]
                assert parsed == (yaml.safe_load(value) if isinstance(value, str) else value)
        # the sweep runner predicts the folder the CLI will use
        run_dir, name, sweep = cli._run_dir()
        assert run_dir == cell_run_dir(tmp_path, config["name"], params)


def test_bad_sweep_files(tmp_path):
    with pytest.raises(SweepError, match="not found"):
        load_sweep(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: grid\nparameters:\n  cell: {valuez: [1d-depth2]}\n")
    with pytest.raises(SweepError, match="not a valid W&B sweep"):
        load_sweep(bad)
    nested = tmp_path / "nested.yaml"
    nested.write_text(
        "method: grid\nparameters:\n  model:\n    parameters:\n      depth: {value: 3}\n"
    )
    with pytest.raises(SweepError, match="flat with dotted names"):
        load_sweep(nested)


def test_cells_and_names():
    assert expand_cell(["fit", "--config", "b.yaml", "--model.lr=1", "--cell=2d-depth4"]) == [
        "fit",
        "--config",
        "b.yaml",
        "--model=lightning_modules.SpecUNetModule",
        "--model.depth=4",
        "--model.lr=1",
    ]
    assert (
        run_name(
            "2d",
            5,
            0,
            model_variants(model_arguments(["--model.input_mode=complex", "--model.filters=8"])),
        )
        == "2d-depth5-complex-filters8-seed0"
    )
    with pytest.raises(ValueError, match="expected '<1d|2d>-depth<N>'"):
        parse_cell("3d-depth2")


# ---- running sweeps offline ----------------------------------------------------------
def tiny_sweep(tmp_path: Path, cells: list[str], budget: str = TINY["budget"]) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "tiny",
                "program": "ablation",
                "method": "grid",
                "metric": {"name": MONITOR, "goal": "maximize"},
                "command": [
                    "${env}",
                    "${interpreter}",
                    "-m",
                    "ablation",
                    "fit",
                    "--config",
                    str(REPO / "sweeps" / "demo_base.yaml"),
                    "--run.sweep=tiny",
                    "${args}",
                ],
                "parameters": {
                    "cell": {"values": cells},
                    "model.filters": {"value": 4},
                    "seed_everything": {"value": 0},
                    "trainer.max_time": {"value": budget},
                },
            }
        )
    )
    return path


@pytest.fixture
def sweep_env(tmp_path, toy_root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("ABLATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(REPO)
    return toy_root


def test_offline_sweep_runs_every_cell_then_skips_them(sweep_env, tmp_path, capfd):
    path = tiny_sweep(tmp_path, ["1d-depth2", "2d-depth2"])
    runs = tmp_path / "runs"
    assert run_sweep(path, runs_dir=runs, root=str(sweep_env), offline=True) == 0
    for name in ("1d-depth2-filters4-seed0", "2d-depth2-filters4-seed0"):
        run = runs / "tiny" / name
        summary = json.loads((run / "summary.json").read_text())
        assert summary["dimension"] == name[:2] and summary["depth"] == 2
        assert summary["steps"] > 0 and (run / "checkpoints" / "last.ckpt").exists()
        assert (run / "config.yaml").exists() and (run / "metrics.csv").exists()
        assert json.loads((run / "wandb_run.json").read_text())["offline"] is True
        assert list((run / "wandb").glob("offline-run-*"))
    capfd.readouterr()
    assert run_sweep(path, runs_dir=runs, root=str(sweep_env), offline=True) == 0
    out = capfd.readouterr().out
    assert out.count("done earlier, skipped") == 2 and "0 finished, 2 skipped" in out


def test_interrupted_cell_resumes_within_its_budget(sweep_env, tmp_path):
    import wandb

    # A W&B run in this process leaves its service token in the environment; runs
    # started from here must not share that service, or it keeps the killed run's id.
    wandb.init(mode="offline", dir=str(tmp_path)).finish()
    assert "WANDB_SERVICE" in os.environ
    budget = 24
    path = tiny_sweep(tmp_path, ["1d-depth2"], budget=f"00:00:00:{budget}")
    runs = tmp_path / "runs"
    run = runs / "tiny" / "1d-depth2-filters4-seed0"
    argv = [
        sys.executable,
        "-m",
        "ablation",
        "sweep",
        str(path),
        "--offline",
        f"--runs-dir={runs}",
        f"--root={sweep_env}",
    ]
    process = subprocess.Popen(
        argv,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ},
    )
    deadline = time.time() + 240
    while not (run / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.5)
    time.sleep(random.uniform(0.0, 4.0))  # a random moment after the first save
    os.killpg(process.pid, signal.SIGKILL)  # the whole sweep, training process included
    process.wait()
    assert (run / "checkpoints" / "last.ckpt").exists() and not is_done(run)
    import torch

    killed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False, map_location="cpu")
    counted = killed["callbacks"]["TrainingBudget"]
    assert run_sweep(path, runs_dir=runs, root=str(sweep_env), offline=True) == 0
    summary = json.loads((run / "summary.json").read_text())
    fairness = summary["fairness"]
    assert summary["steps"] > killed["global_step"]  # it went on from the checkpoint
    # the saved training time counted once: the run ends within one step of the budget
    assert summary["train_seconds"] == fairness["train_seconds"]
    assert budget <= fairness["train_seconds"] <= budget + fairness["max_step_seconds"]
    assert fairness["counted_steps"] == summary["steps"]
    # the second start-up, validations and saves were timed apart, not counted
    assert fairness["excluded_seconds"] > sum(counted["excluded"].values())
    assert fairness["excluded"]["startup"] > counted["excluded"]["startup"]


def test_failed_cell_is_reported_and_others_run(sweep_env, tmp_path, capfd):
    path = tiny_sweep(tmp_path, ["1d-depth2", "2d-depth2"])
    config = yaml.safe_load(path.read_text())
    config["parameters"]["cell"]["values"] = ["1d-depth2", "2d-depth99"]  # depth 99 cannot build
    path.write_text(yaml.safe_dump(config))
    code = run_sweep(path, runs_dir=tmp_path / "runs", root=str(sweep_env), offline=True)
    out = capfd.readouterr().out
    assert code == 1 and "1 finished" in out and "1 failed ['2d-depth99-filters4-seed0']" in out


# ---- online: command lines through a stub `wandb` -----------------------------------
def test_online_sweep_creates_sweep_and_one_agent_per_gpu(tmp_path, monkeypatch, capfd):
    log = tmp_path / "calls.jsonl"
    stub = tmp_path / "bin" / "wandb"
    stub.parent.mkdir()
    stub.write_text(
        f"#!{sys.executable}\nimport json, os, sys\n"
        f"open({str(log)!r}, 'a').write(json.dumps({{'argv': sys.argv[1:], "
        f"'gpu': os.environ.get('CUDA_VISIBLE_DEVICES')}}) + '\\n')\n"
        "if sys.argv[1] == 'sweep':\n"
        "    line = 'wandb: Run sweep agent with: wandb agent me/unet-ablation/abc123'\n"
        "    print(line, file=sys.stderr)\n"
    )
    stub.chmod(0o755)
    monkeypatch.setenv("PATH", f"{stub.parent}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    sweep_file = REPO / "sweeps" / "depth_dimension.yaml"
    assert run_sweep(sweep_file, gpus=["0", "1"], count=3, root=str(tmp_path)) == 0
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls[0]["argv"] == ["sweep", str(sweep_file)]
    agents = sorted((c["gpu"], c["argv"]) for c in calls[1:])
    assert agents == [
        ("0", ["agent", "--count", "3", "me/unet-ablation/abc123"]),
        ("1", ["agent", "--count", "3", "me/unet-ablation/abc123"]),
    ]
    assert "wandb agent me/unet-ablation/abc123" in capfd.readouterr().out
    assert os.environ["MUSDB_PATH"] == str(tmp_path.resolve())


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    import torch

    from lightning_modules.lightning_cli import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "checkpoints" / "last.ckpt"
    io.save_checkpoint({"step": 1}, path)

    def killed_midway(self, checkpoint, target, storage_options=None):
        Path(target).write_bytes(b"half a checkpoint")  # the process dies mid-write
        raise KeyboardInterrupt

    from lightning.pytorch.plugins.io import TorchCheckpointIO

    monkeypatch.setattr(TorchCheckpointIO, "save_checkpoint", killed_midway)
    with pytest.raises(KeyboardInterrupt):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=False) == {"step": 1}  # the previous one, whole


def test_a_seeds_axis_runs_every_cell_at_every_seed_on_that_seeds_data(
    tmp_path, monkeypatch, toy_root
):
    from ablation.sweep import with_seeds
    from lightning_modules.lightning_cli import AblationCLI

    monkeypatch.chdir(REPO)
    demo = REPO / "sweeps" / "demo.yaml"
    seeded = with_seeds(demo, 3, tmp_path)
    assert seeded == tmp_path / "demo" / "sweep-seeds3.yaml"
    config = load_sweep(seeded)
    cells = grid(config)
    plain = grid(load_sweep(demo))
    assert len(cells) == 3 * len(plain) == 12
    assert {(c["cell"], c["seed_everything"]) for c in cells} == {
        (c["cell"], seed) for c in plain for seed in (0, 1, 2)
    }
    folders = {cell_run_dir(tmp_path, "demo", c).name for c in cells}
    assert len(folders) == 12 and "2d-depth3-lr0.001-seed2" in folders
    seed_two = next(c for c in cells if c["seed_everything"] == 2)
    where = [f"--run.dir={tmp_path}", f"--data.root={toy_root}"]
    cli = AblationCLI(expand_cell(command(config, seed_two)[4:] + where), run=False)
    assert cli.datamodule.seed == 2 and cli.config.data.seed == 2
    chosen = AblationCLI(
        expand_cell(command(config, seed_two)[4:] + [*where, "--data.seed=5"]), run=False
    )
    assert chosen.datamodule.seed == 5
    with pytest.raises(SweepError, match="--seeds must be 1 or more"):
        with_seeds(demo, 0, tmp_path)


def test_make_sweep_seeds_submits_an_array_of_every_cell_at_every_seed(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "ablation", "sweep", "sweeps/demo.yaml", "--seeds", "2",
         "--slurm", "--offline", "--dry-run", f"--runs-dir={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "batch script for 8 array tasks" in done.stdout
    script = next((tmp_path / "demo" / "slurm").glob("*.sbatch")).read_text()
    assert "#SBATCH --array=0-7" in script and "sweep-seeds2.yaml" in script
