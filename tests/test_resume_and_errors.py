"""Resume keeps what a user did, and user errors stop ``ablation fit`` in one line."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from test_modules import SEGMENT, trainer

from ablation.arguments import expand_cell
from ablation.cli import main
from ablation.constants import MONITOR, MONITOR_MODE, TRAIN_LOSS
from ablation.files import write_json
from datamodules import MUSDBDataModule
from lightning_modules import WaveUNetModule
from lightning_modules.callbacks import spectrogram_image
from lightning_modules.lightning_cli import AblationCLI, RunCheckpoint

REPO = Path(__file__).resolve().parents[1]
BASE = str(REPO / "sweeps" / "demo_base.yaml")


@pytest.fixture
def fit_env(tmp_path, toy_root, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("ABLATION_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ABLATION_DEBUG", raising=False)
    return toy_root


def fit_args(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    return [
        "fit", "--config", BASE, "--cell=1d-depth2", "--model.filters=4",
        "--trainer.max_time=00:00:00:05", f"--data.root={root}", f"--run.dir={tmp_path / 'runs'}",
        "--run.name=run", *extra,
    ]  # fmt: skip


def refuse_constants(name: str):
    raise AssertionError(f"non-standard JSON constant {name}")


# ---- item 9: summary.json, one-line errors, short segments, leftovers ----------------------
def test_write_json_writes_standard_json_with_null_for_non_finite(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"sdr": -math.inf, "mse": math.nan, "ok": 1.5, "fair": {"x": [math.inf]}})
    data = json.loads(path.read_text(), parse_constant=refuse_constants)
    assert data == {"sdr": None, "mse": None, "ok": 1.5, "fair": {"x": [None]}}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize("samples", [1024, 700])
def test_spectrogram_image_of_a_segment_shorter_than_its_window(samples):
    image = spectrogram_image(torch.randn(2, samples))
    assert image.ndim == 3 and image.shape[-1] == 3 and image.shape[0] > 1


@pytest.mark.parametrize(
    "change, expected",
    [
        ("--cell=1d-deep2", "is not a grid cell"),
        ("--model.depth=0", "depth"),
        ("--data.targets=oboe", "oboe"),
    ],
)
def test_fit_answers_a_user_error_in_one_line(fit_env, tmp_path, change, expected):
    with pytest.raises(SystemExit) as exit_info:
        main([*fit_args(tmp_path, fit_env), change])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and expected in message
    assert "\n" not in message.strip()


def test_fit_refuses_a_missing_root_in_one_line_and_debug_shows_the_traceback(
    fit_env, tmp_path, monkeypatch
):
    args = fit_args(tmp_path, tmp_path / "no-such-root")
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert str(exit_info.value.code).startswith("error: ")
    assert "no-such-root" in str(exit_info.value.code)
    monkeypatch.setenv("ABLATION_DEBUG", "1")
    with pytest.raises(ValueError, match="no-such-root"):
        main(args)


def test_a_new_run_of_a_folder_removes_leftover_temporary_files(fit_env, tmp_path):
    run = tmp_path / "runs" / "adhoc" / "run"
    (run / "checkpoints").mkdir(parents=True)
    leftovers = [run / "tmpa1b2.tmp", run / ".summary.json.x9.tmp"]
    leftovers.append(run / "checkpoints" / ".last.ckpt.partial")
    kept = run / "checkpoints" / "best.ckpt"
    for path in [*leftovers, kept]:
        path.write_bytes(b"half")
    AblationCLI(expand_cell(fit_args(tmp_path, fit_env)[1:]), run=False)
    assert [p for p in leftovers if p.exists()] == [] and kept.exists()


# ---- item 2: metrics.csv survives resume -------------------------------------------------
def fit_steps(tmp_path: Path, root: Path, steps: int, *extra: str) -> Path:
    """A fit that stops after ``steps`` steps; returns its run folder."""
    main(
        [
            *fit_args(tmp_path, root, *extra),
            "--trainer.max_time=00:00:02:00",
            f"--trainer.max_steps={steps}",
            "--trainer.log_every_n_steps=1",
        ]
    )
    return tmp_path / "runs" / "adhoc" / "run"


def train_loss_steps(run: Path) -> list[int]:
    rows = pd.read_csv(run / "metrics.csv")
    return sorted(rows.loc[rows[TRAIN_LOSS].notna(), "step"].astype(int))


def test_metrics_csv_keeps_every_step_once_across_resumes(fit_env, tmp_path):
    run = fit_steps(tmp_path, fit_env, 3)
    assert train_loss_steps(run) == [0, 1, 2]
    # A kill after the last save: the summary is missing and rows past step 3 were logged.
    (run / "summary.json").unlink()
    rows = pd.read_csv(run / "metrics.csv")
    lost = pd.DataFrame({"step": [3, 4], TRAIN_LOSS: [-1.0, -1.0]}, columns=rows.columns)
    lost.to_csv(run / "metrics.csv", mode="a", header=False, index=False)
    fit_steps(tmp_path, fit_env, 5)
    (run / "summary.json").unlink()
    fit_steps(tmp_path, fit_env, 7)
    assert train_loss_steps(run) == [0, 1, 2, 3, 4, 5, 6]
    assert (pd.read_csv(run / "metrics.csv")[TRAIN_LOSS] != -1.0).all()


# ---- item 6: --ckpt_path, and a resume with a new learning rate -------------------------
@pytest.fixture(scope="module")
def first_run(toy_root, tmp_path_factory) -> tuple[Path, Path]:
    """A 2-step 1d run written by the CLI: (its tmp folder, its last.ckpt)."""
    tmp = tmp_path_factory.mktemp("first")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("ABLATION_CACHE", str(tmp / "cache"))
        run = fit_steps(tmp, toy_root, 2)
    return tmp, run / "checkpoints" / "last.ckpt"


def test_fit_from_ckpt_path_continues_with_the_configured_learning_rate(
    fit_env, first_run, tmp_path, caplog
):
    _, ckpt = first_run
    caplog.set_level(logging.INFO)
    run = fit_steps(tmp_path, fit_env, 4, f"--ckpt_path={ckpt}", "--model.lr=1e-4")
    assert json.loads((run / "summary.json").read_text())["steps"] == 4
    rates = pd.read_csv(run / "metrics.csv").filter(like="lr-").stack().dropna()
    assert len(rates) > 0 and (rates == 1e-4).all()
    assert "configured learning rate 0.0001 (checkpoint: 0.0003)" in caplog.text


@pytest.mark.parametrize("subcommand, metric", [("validate", "val/sdr"), ("test", "test/sdr")])
def test_validate_and_test_load_a_suite_checkpoint(
    fit_env, first_run, tmp_path, subcommand, metric
):
    _, ckpt = first_run
    # The checkpoint's net wins over a config that names another one.
    args = [subcommand, "--config", BASE, "--cell=2d-depth3", f"--data.root={fit_env}"]
    main([*args, f"--run.dir={tmp_path}", "--run.name=check", f"--ckpt_path={ckpt}"])
    metrics = pd.read_csv(tmp_path / "adhoc" / "check" / subcommand / "metrics.csv")
    assert metric in metrics and metrics[metric].notna().any()


# ---- item 1: last.ckpt is the latest state, whatever the monitor did ----------------------
class FallingSDR(WaveUNetModule):
    """``val/sdr`` gets worse at every validation, so no top-k file is saved after the
    first; records the step held by ``last.ckpt`` once each validation has ended."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.last_ckpt_steps: list[tuple[int, int]] = []

    def validation_step(self, batch, batch_idx):
        self.log(MONITOR, -float(self.global_step), batch_size=batch.shape[0])

    def on_validation_end(self) -> None:
        last = Path(self.trainer.default_root_dir) / "checkpoints" / "last.ckpt"
        saved = torch.load(last, weights_only=False)["global_step"] if last.exists() else None
        self.last_ckpt_steps.append((self.trainer.global_step, saved))


@pytest.fixture
def toy_data(toy_root, tmp_path) -> MUSDBDataModule:
    """Six batches of two segments per epoch."""
    return MUSDBDataModule(
        root=str(toy_root), cache_dir=str(tmp_path / "cache"), segment=SEGMENT, batch_size=2,
        num_workers=0, segments_per_track=4, progress=False,
    )  # fmt: skip


def fit_falling(tmp_path: Path, datamodule, checkpoint) -> FallingSDR:
    module = FallingSDR(depth=2, filters=4, segment=SEGMENT, example_every_n_epochs=0)
    fit = trainer(
        tmp_path, max_steps=7, val_check_interval=2, limit_val_batches=1,
        num_sanity_val_steps=0, enable_checkpointing=True, callbacks=[checkpoint],
    )  # fmt: skip
    fit.fit(module, datamodule=datamodule)
    return module


def test_last_ckpt_follows_every_validation_and_the_end_in_a_flat_stretch(tmp_path, toy_data):
    checkpoint = RunCheckpoint(tmp_path / "checkpoints")
    module = fit_falling(tmp_path, toy_data, checkpoint)
    assert module.last_ckpt_steps == [(2, 2), (4, 4), (6, 6)]
    # The end of training (step 7, no validation there) is saved too.
    final = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert final["global_step"] == 7
    assert len(list((tmp_path / "checkpoints").glob("best-*.ckpt"))) == 1


def test_lightning_alone_keeps_last_ckpt_at_the_best_step_in_a_flat_stretch(tmp_path, toy_data):
    """Why RunCheckpoint exists: the same run under a plain ModelCheckpoint."""
    checkpoint = ModelCheckpoint(
        tmp_path / "checkpoints", monitor=MONITOR, mode=MONITOR_MODE, save_last=True
    )
    module = fit_falling(tmp_path, toy_data, checkpoint)
    assert module.last_ckpt_steps == [(2, 2), (4, 2), (6, 2)]


def test_a_finished_run_last_ckpt_holds_its_final_step(fit_env, tmp_path):
    run = fit_steps(tmp_path, fit_env, 3, "--run.val_every_seconds=1000")
    steps = json.loads((run / "summary.json").read_text())["steps"]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert steps == 3 and last["global_step"] == 3


# ---- item 7: a run folder keeps its arguments; a copied folder resumes from its own ------
def copied_run(first_run, tmp_path: Path, finished: bool) -> Path:
    """The 2-step first run copied into this test's run.dir (another folder than it ran
    in); unfinished: killed after its last save, as if its summary was never written."""
    source = first_run[1].parents[1]
    run = tmp_path / "runs" / "adhoc" / "run"
    shutil.copytree(source, run)
    if not finished:
        (run / "summary.json").unlink()
    return run


def contents(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (run / "config.yaml", run / "hparams.yaml")}


@pytest.mark.parametrize("finished", [True, False], ids=["skip", "resume"])
def test_a_changed_argument_is_refused_in_one_line_naming_it(
    fit_env, first_run, tmp_path, finished
):
    run = copied_run(first_run, tmp_path, finished)
    before = contents(run)
    with pytest.raises(SystemExit) as exit_info:
        fit_steps(tmp_path, fit_env, 4, "--data.sample_rate=22050", "--seed_everything=3")
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert "data.sample_rate 11025 -> 22050" in message and "seed_everything 0 -> 3" in message
    assert "--run.name" in message and "model.depth" not in message
    assert contents(run) == before and not (run / "checkpoints" / "last-v1.ckpt").exists()


def test_places_logging_and_the_learning_rate_do_not_count_on_resume(fit_env, first_run, tmp_path):
    run = copied_run(first_run, tmp_path, finished=False)
    root = f"{fit_env}/../{fit_env.name}/."
    changes = [f"--data.root={root}", "--run.project=elsewhere", "--data.num_workers=1"]
    changes += ["--trainer.log_every_n_steps=2", "--model.lr=1e-4", "--trainer.devices=1"]
    fit_steps(tmp_path, fit_env, 4, *changes)
    assert json.loads((run / "summary.json").read_text())["steps"] == 4


def test_a_copied_run_folder_resumes_from_its_own_last_ckpt(fit_env, first_run, tmp_path, capsys):
    run = copied_run(first_run, tmp_path, finished=False)
    fit_steps(tmp_path, fit_env, 4)
    assert f"resuming from {run / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    assert sorted(p.name for p in (run / "checkpoints").glob("last*")) == ["last.ckpt"]
    last = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert last["global_step"] == 4
    assert json.loads((run / "summary.json").read_text())["steps"] == 4


# ---- item 2: W&B resumes into the same run with increasing steps ------------------------
def test_wandb_resume_continues_one_run_at_increasing_steps(fit_env, tmp_path):
    """Two processes, as a kill and a resume are: the second W&B segment of the run
    rewinds it to before its first row and replays metrics.csv up to the checkpoint,
    so the synced run holds every step once, rows at the training step."""
    from wandb_files import history, run_history

    # A W&B run of this test process leaves its service in WANDB_SERVICE: not theirs.
    environment = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    environment["WANDB_SILENT"] = "true"

    def fit(steps: int) -> None:
        arguments = [*fit_args(tmp_path, fit_env), f"--trainer.max_steps={steps}",
                     "--trainer.max_time=00:00:02:00", "--trainer.log_every_n_steps=1"]  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "ablation", *arguments], cwd=REPO, check=True,
            capture_output=True, env=environment,
        )  # fmt: skip

    run = tmp_path / "runs" / "adhoc" / "run"
    fit(3)
    (run / "summary.json").unlink()  # as if killed after its last save, at step 3
    fit(6)
    segments = sorted((run / "wandb").glob("offline-run-*"))
    run_id = json.loads((run / "wandb_run.json").read_text())["id"]
    assert len(segments) == 2 and all(s.name.endswith(run_id) for s in segments)
    rows = [history(next(s.glob("run-*.wandb"))) for s in segments]
    steps = [[row["trainer/global_step"] for row in segment] for segment in rows]
    assert steps[0] == [0, 1, 2, 3] and steps[1] == [0, 1, 2, 3, 4, 5, 6], steps
    assert [row["trainer/global_step"] for row in run_history(run)] == list(range(7))
    assert all(row["_step"] == row["trainer/global_step"] + 1 for row in rows[0] + rows[1])
