"""Budgets that measure the work (issue 20): step units, calibration tables, measured
FLOPs, budget-fraction checkpoints, and the fairness record's instrumentation off the
clock."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import test_resume_and_errors
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from test_modules import FakeClock, tiny_module, trainer
from test_resume_and_errors import fit_args
from torch import nn

from ablation.calibration import CalibrationError, budget_steps, find_entry, write_entry
from ablation.cli import main
from ablation.constants import TRAIN_LOSS, VAL_LOSS, VAL_SDR
from ablation.nets import build
from ablation.nets.flops import inference_flops_per_second, training_step_flops
from lightning_modules import fairness as fairness_module
from lightning_modules.budget import BudgetError, TrainingBudget
from lightning_modules.fairness import FairnessRecord

REPO = Path(__file__).resolve().parents[1]
STEPS = 24
FOUR_QUANTITIES = ("train_seconds", "counted_steps", "items_seen", "train_flops")


# The toy CLI environment of test_resume_and_errors.py, shared rather than written again.
fit_env = test_resume_and_errors.fit_env


def steps_args(tmp_path: Path, root: Path, *extra: str) -> list[str]:
    return fit_args(
        tmp_path, root, "--run.budget_unit=steps", f"--run.budget_steps={STEPS}",
        "--run.val_every_steps=4", "--trainer.log_every_n_steps=1", *extra,
    )  # fmt: skip


def logged(rows: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The rows holding any of ``columns``, in step order."""
    kept = rows[columns].dropna(how="all", subset=columns[2:])
    return kept.sort_values(["step", *columns[2:]]).reset_index(drop=True)


def checkpoint_step(path: Path) -> int:
    return torch.load(path, map_location="cpu", weights_only=False)["global_step"]


def run_folder(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "adhoc" / "run"


# ---- a step budget survives a kill -------------------------------------------------------
def test_a_step_budget_killed_and_resumed_trains_exactly_its_steps(fit_env, tmp_path):
    """SIGKILL the run once its first last.ckpt is on disk, resume it: it ends on its
    budget, each step logged once in metrics.csv and in W&B (whatever the kill kept
    from W&B's unwritten buffer), the record holding all four quantities, and the
    budget-fraction checkpoints at their steps."""
    from wandb_files import run_history

    run = run_folder(tmp_path)
    # its own W&B service: a killed child would leave ours holding its run id "in use"
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env |= {"PYTHONPATH": str(REPO), "WANDB_MODE": "offline", "WANDB_SILENT": "true"}

    def fit(folder: Path) -> None:  # in a process of its own, as a sweep runs a cell
        subprocess.run(
            [sys.executable, "-m", "ablation", *steps_args(folder, fit_env)], env=env,
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True,
        )  # fmt: skip

    log = (tmp_path / "child.log").open("w")
    child = subprocess.Popen(
        [sys.executable, "-m", "ablation", *steps_args(tmp_path, fit_env)],
        env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert not (run / "summary.json").exists(), "the run ended before it could be killed"
    assert last.exists(), (tmp_path / "child.log").read_text()[-3000:]
    killed_at = checkpoint_step(last)
    assert 0 < killed_at < STEPS

    fit(tmp_path)
    summary = json.loads((run / "summary.json").read_text())
    record = summary["fairness"]
    assert summary["steps"] == record["counted_steps"] == record["budget_steps"] == STEPS
    assert record["budget_unit"] == "steps" and record["budget_seconds"] is None
    assert all(record[name] is not None and record[name] > 0 for name in FOUR_QUANTITIES)
    assert record["items_seen"] == STEPS * 8  # the demo base's batch of 8
    assert record["train_flops"] == STEPS * record["train_flops_per_step"]
    rows = pd.read_csv(run / "metrics.csv")
    assert sorted(rows.loc[rows[TRAIN_LOSS].notna(), "step"].astype(int)) == list(range(STEPS))
    # row by row what the same run logs uninterrupted: steps, epochs and values
    fit(tmp_path / "whole")
    whole = pd.read_csv(run_folder(tmp_path / "whole") / "metrics.csv")
    columns = ["epoch", "step", TRAIN_LOSS, VAL_LOSS, VAL_SDR]
    pd.testing.assert_frame_equal(logged(rows, columns), logged(whole, columns))
    wandb_columns = ["epoch", "trainer/global_step", TRAIN_LOSS, VAL_LOSS, VAL_SDR]
    resumed_wandb = pd.DataFrame(run_history(run)).reindex(columns=wandb_columns)
    whole_wandb = pd.DataFrame(run_history(run_folder(tmp_path / "whole")))
    whole_wandb = whole_wandb.reindex(columns=wandb_columns)
    assert resumed_wandb["trainer/global_step"].is_monotonic_increasing
    assert len(resumed_wandb[VAL_SDR].dropna()) == STEPS // 4
    pd.testing.assert_frame_equal(resumed_wandb, whole_wandb, check_dtype=False)
    # validations every 4 steps on the step clock, wherever the kill fell
    assert record["val_every_steps"] == 4 and record["validations"] == STEPS // 4
    for fraction, step in ((0.125, 3), (0.25, 6), (0.5, 12), (1, 24)):
        assert checkpoint_step(run / "checkpoints" / f"budget-{fraction:g}.ckpt") == step


def test_a_flops_budget_becomes_steps_by_the_measured_flops_of_a_step(fit_env, tmp_path):
    first = run_folder(tmp_path / "probe")
    main(fit_args(tmp_path / "probe", fit_env, "--run.budget_unit=steps", "--run.budget_steps=2"))
    per_step = json.loads((first / "summary.json").read_text())["fairness"]["train_flops_per_step"]
    main(
        fit_args(
            tmp_path, fit_env, "--run.budget_unit=flops", f"--run.budget_flops={5.5 * per_step}"
        )
    )
    record = json.loads((run_folder(tmp_path) / "summary.json").read_text())["fairness"]
    assert record["budget_steps"] == record["counted_steps"] == 5
    assert record["budget_flops"] == 5.5 * per_step and record["train_flops"] <= 5.5 * per_step


@pytest.mark.parametrize(
    "change, expected",
    [
        ("--run.budget_unit=steps", "--run.budget_steps"),
        ("--run.budget_unit=flops", "--run.budget_flops"),
        ("--run.checkpoint_fractions=[0.5, 2]", "(0, 1]"),
    ],
)
def test_a_budget_that_cannot_be_counted_is_refused_in_one_line(
    fit_env, tmp_path, change, expected
):
    with pytest.raises(SystemExit) as exit_info:
        main(fit_args(tmp_path, fit_env, change))
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and expected in message and "\n" not in message


# ---- calibration ------------------------------------------------------------------------
def test_a_calibrated_run_trains_the_tables_steps_for_its_cell(fit_env, tmp_path):
    table = tmp_path / "table.json"
    measured = {"batch_size": 8, "precision": "32-true"}
    # fit_args trains --cell=1d-depth2 --model.filters=4
    write_entry(
        table, "1d-depth2-filters4", {"seconds_per_step": 0.8, "device": "a GPU", **measured}
    )
    args = fit_args(tmp_path, fit_env, "--run.budget_unit=calibrated", f"--run.calibration={table}")
    main(args)
    record = json.loads((run_folder(tmp_path) / "summary.json").read_text())["fairness"]
    # 5 s of budget at 0.8 s a step, whatever this machine's own step time
    assert record["budget_steps"] == record["counted_steps"] == round(5 / 0.8)
    assert record["budget_seconds"] == 5 and record["calibration"]["device"] == "a GPU"


def test_a_run_that_calibrates_trains_as_the_run_that_reads_its_table(
    fit_env, tmp_path, monkeypatch
):
    """The first run measures its cell into the table, the second reads it: both train
    the same steps to the same weights (the calibration leaves the run untouched)."""
    from lightning_modules import calibration

    monkeypatch.setattr(calibration, "MIN_TIMED_SECONDS", 0.0)
    monkeypatch.setattr(calibration, "MIN_TIMED_STEPS", 2)
    table = tmp_path / "table.json"
    weights = []
    for name in ("first", "second"):
        calibrated = ("--run.budget_unit=calibrated", f"--run.calibration={table}")
        # a 1 s budget: a few steps at this machine's step time
        main(fit_args(tmp_path / name, fit_env, *calibrated, "--trainer.max_time=00:00:00:01"))
        weights.append(torch.load(run_folder(tmp_path / name) / "checkpoints" / "last.ckpt",
                                  weights_only=False)["state_dict"])  # fmt: skip
    entry = json.loads(table.read_text())["cells"]["1d-depth2-filters4"]
    assert entry["timed_steps"] >= 2 and entry["seconds_per_step"] > 0
    assert entry["world_size"] == 1 and entry["precision"] == "32-true"
    steps = budget_steps(1, entry)
    for name in ("first", "second"):
        record = json.loads((run_folder(tmp_path / name) / "summary.json").read_text())
        assert record["fairness"]["counted_steps"] == steps
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_a_table_measured_with_another_batch_is_refused_with_the_fix(tmp_path):
    table = tmp_path / "table.json"
    write_entry(table, "2d-depth3", {"seconds_per_step": 0.1, "batch_size": 16})
    with pytest.raises(CalibrationError, match=r"batch_size 16 \(run: 8\).*--run.calibration"):
        find_entry(table, "2d-depth3", {"batch_size": 8})
    assert find_entry(table, "1d-depth3", {"batch_size": 8}) is None
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(CalibrationError, match="not readable JSON"):
        find_entry(tmp_path / "bad.json", "x", {})


def test_the_demo_ships_a_table_for_every_demo_cell():
    from ablation.arguments import parse_cell, variant_arguments
    from ablation.calibration import cell_key, read_table
    from ablation.sweep import offline_cells

    config, name, cells = offline_cells(REPO / "sweeps" / "demo.yaml")
    assert {c["run.budget_unit"] for c in cells} == {"calibrated"}
    table = read_table(REPO / cells[0]["run.calibration"])["cells"]
    for cell in cells:
        entry = table[cell_key(*parse_cell(cell["cell"]), variant_arguments(cell))]
        assert entry["batch_size"] == 8 and entry["precision"] == "32-true"
        assert entry["seconds_per_step"] > 0 and entry["timed_steps"] >= 10


# ---- FLOPs measured -----------------------------------------------------------------------
class TwoConvs(nn.Module):
    """Two valid 1-D convolutions; ``forward(mixture, context)`` crops the region."""

    def __init__(self):
        super().__init__()
        self.first = nn.Conv1d(2, 6, 5)
        self.second = nn.Conv1d(6, 8, 3)
        self.norm = nn.BatchNorm1d(6)

    def forward(self, mixture, context=0):
        out = self.second(F.relu(self.norm(self.first(mixture))))
        return out[..., context : out.shape[-1] - context]


def conv_flops(batch, c_in, c_out, kernel, length_out) -> int:
    """One convolution's multiply-adds, counted as 2 FLOPs each."""
    return 2 * batch * c_out * length_out * c_in * kernel


def test_training_flops_match_the_convolutions_counted_from_their_shapes():
    net = TwoConvs()
    batch, window = 3, 100
    first = conv_flops(batch, 2, 6, 5, window - 4)
    second = conv_flops(batch, 6, 8, 3, window - 6)
    # backward: the first layer's weight gradient only (its input needs none); the
    # second's input and weight gradients, each as costly as its forward
    expected = (first + second) + first + 2 * second
    assert training_step_flops(net, batch, 2, window, context_samples=10) == expected
    per_second = inference_flops_per_second(net, 2, 1000, segment_samples=80, context_samples=10)
    assert per_second == (conv_flops(1, 2, 6, 5, 96) + conv_flops(1, 6, 8, 3, 94)) / 0.08


def test_measuring_flops_leaves_the_net_and_its_statistics_untouched():
    net = build({"dimension": "2d", "depth": 2, "filters": 4, "n_fft": 512, "hop_length": 128,
                 "bins": 128, "sources": 4, "channels": 2})  # fmt: skip
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = torch.get_rng_state()
    flops = training_step_flops(net, 2, 2, 30000, 2000)
    assert flops > 0 and torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert all(p.grad is None and p.device.type == "cpu" for p in net.parameters())


# ---- budget-fraction checkpoints on the time clock, and the instrumentation ------------------
@pytest.fixture
def make_dm(toy_root, tmp_path):
    from datamodules import MUSDBDataModule

    def make():
        return MUSDBDataModule(
            root=str(toy_root), cache_dir=str(tmp_path / "cache"), segment=1.0, batch_size=2,
            num_workers=0, segments_per_track=4, progress=False,
        )  # fmt: skip

    return make


def test_time_budget_fractions_are_kept_on_the_counted_clock(make_dm, tmp_path):
    from lightning_modules.lightning_cli import RunCheckpoint

    clock = FakeClock()  # 1 s per training batch
    budget = TrainingBudget(16, clock=clock.perf_counter, fractions=(0.25, 0.5, 1.0))
    fit = trainer(
        tmp_path, max_epochs=-1, limit_val_batches=0, enable_checkpointing=True,
        callbacks=[clock, budget, RunCheckpoint(tmp_path / "checkpoints", budget)],
    )  # fmt: skip
    fit.fit(tiny_module("1d"), datamodule=make_dm())
    saved = {p.name: checkpoint_step(p) for p in (tmp_path / "checkpoints").glob("budget-*")}
    assert saved == {"budget-0.25.ckpt": 4, "budget-0.5.ckpt": 8, "budget-1.ckpt": 16}


def test_the_fairness_records_own_work_is_excluded_from_the_budget(make_dm, tmp_path, monkeypatch):
    """Hashing a batch takes 5 s on the fake clock: none of it is counted as training."""
    clock = FakeClock()
    digest = fairness_module.stems_digest

    def slow_digest(stems):
        clock.now += 5.0
        return digest(stems)

    monkeypatch.setattr(fairness_module, "stems_digest", slow_digest)
    budget = TrainingBudget(None, clock=clock.perf_counter, unit="steps", max_steps=6)
    record = FairnessRecord()
    fit = trainer(tmp_path, max_epochs=-1, limit_val_batches=0, callbacks=[clock, budget, record])
    fit.fit(tiny_module("1d"), datamodule=make_dm())
    assert budget.steps == 6 and budget.train_seconds == 6  # 1 s a step, nothing more
    assert budget.excluded["instrumentation"] == 5.0 * len(record.digests) > 0


def test_a_step_unit_without_steps_is_refused_before_training(make_dm, tmp_path):
    budget = TrainingBudget(None, unit="calibrated")
    fit = trainer(tmp_path, max_epochs=-1, limit_val_batches=0, callbacks=[budget])
    with pytest.raises(BudgetError, match="no step count"):
        fit.fit(tiny_module("1d"), datamodule=make_dm())


def test_step_units_validate_at_the_same_share_of_the_budget_as_the_time_unit():
    # base.yaml: every 600 s of a 3-hour budget, i.e. 18 validations whatever the unit
    budget = TrainingBudget(10800, val_every_seconds=600, unit="calibrated", max_steps=9000)
    assert budget.val_every_steps == 500
    assert TrainingBudget(10800, 600, unit="steps", max_steps=90, val_every_steps=7).val_every == 7
    assert TrainingBudget(10800, 600).val_every == 600
    with pytest.raises(BudgetError, match="unknown budget unit"):
        TrainingBudget(10, unit="hours")


# ---- resumed logs equal uninterrupted logs (issue 21, item 2) -----------------------------
class KillAt(Callback):
    """Stands for a kill: stops the process's training dead after ``step`` steps, with
    nothing saved since the last validation."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_step == self.step:
            raise Killed


class Killed(Exception):
    pass


def fit_logged(tmp_path: Path, make_dm, callbacks, ckpt_path=None) -> Path:
    """A run on the budget's time clock (1 s a step, validation every 3 s), logging to
    metrics.csv as `ablation fit` does; returns the metrics.csv."""
    from lightning_modules.csv_log import AppendingCSVLogger, TrimMetricsOnResume
    from lightning_modules.lightning_cli import RunCheckpoint

    clock = FakeClock()
    budget = TrainingBudget(14, val_every_seconds=3, clock=clock.perf_counter)
    fit = trainer(
        tmp_path, max_epochs=-1, limit_val_batches=1, enable_checkpointing=True,
        logger=AppendingCSVLogger(str(tmp_path), name="", version=""), log_every_n_steps=1,
        callbacks=[clock, budget, RunCheckpoint(tmp_path / "checkpoints", budget),
                   TrimMetricsOnResume(), *callbacks],
    )  # fmt: skip
    torch.manual_seed(0)
    fit.fit(tiny_module("1d"), datamodule=make_dm(), ckpt_path=ckpt_path)
    return tmp_path / "metrics.csv"


def test_a_run_validated_on_the_time_clock_resumes_into_the_uninterrupted_log(make_dm, tmp_path):
    """Killed twice (after steps 5 and 11, validations at 3, 6, 9 and 12 counted seconds),
    resumed each time from last.ckpt: metrics.csv holds the uninterrupted run's rows,
    same steps, epochs and values."""
    whole = pd.read_csv(fit_logged(tmp_path / "whole", make_dm, []))
    run = tmp_path / "killed"
    last = run / "checkpoints" / "last.ckpt"
    for kill in (5, 11):
        with pytest.raises(Killed):
            fit_logged(run, make_dm, [KillAt(kill)], last if last.exists() else None)
    resumed = pd.read_csv(fit_logged(run, make_dm, [], last))
    columns = ["epoch", "step", TRAIN_LOSS, VAL_LOSS, VAL_SDR]
    assert len(whole[VAL_LOSS].dropna()) == 5  # at 3, 6, 9, 12 s and at the end (14 s)
    pd.testing.assert_frame_equal(logged(resumed, columns), logged(whole, columns))
