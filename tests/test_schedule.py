"""The cosine learning-rate schedule over the counted time budget
(lightning_modules/schedule.py): one shape for every cell whatever its step rate, its
floor at the end of the budget, across a kill and resume too."""

from __future__ import annotations

import json
import math

import lightning as L
import pytest
import test_modules
import test_resume_and_errors
from lightning.pytorch.callbacks import Callback
from test_modules import tiny_module, trainer

from ablation.checkpoint import read_checkpoint
from ablation.cli import main
from lightning_modules.budget import TrainingBudget
from lightning_modules.schedule import ScheduleError, TimeCosine

# The toy DataModule of test_modules.py, shared rather than written again.
datamodule_factory = test_modules.datamodule_factory
fit_env = test_resume_and_errors.fit_env

BASE_LR, WARMUP, FLOOR, BUDGET = 1e-3, 0.2, 0.1, 10.0


def expected_factor(progress: float) -> float:
    """The schedule written out: linear to 1 over the first 20 %, then half a cosine
    from 1 down to 0.1 at the end."""
    if progress < WARMUP:
        return progress / WARMUP
    return FLOOR + (1 - FLOOR) * (1 + math.cos(math.pi * (progress - WARMUP) / (1 - WARMUP))) / 2


class StepClock(Callback):
    """A fake clock: each training step takes ``seconds`` (a fast or a slow net)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def on_train_batch_end(self, *args) -> None:
        self.now += self.seconds


class RateLog(Callback):
    """(counted seconds before the step, learning rate of the step), step by step."""

    def __init__(self, budget: TrainingBudget | None = None):
        self.budget = budget
        self.rates: list[tuple[float, float]] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        counted = self.budget.train_seconds if self.budget else trainer.global_step
        self.rates.append((counted, optimizer.param_groups[0]["lr"]))


def fit_on_budget(dimension, seconds_per_step, tmp_path, datamodule, ckpt_path=None, **kwargs):
    clock = StepClock(seconds_per_step)
    budget = TrainingBudget(BUDGET, clock=clock.perf_counter)
    log = RateLog(budget)
    fit = trainer(
        tmp_path, max_epochs=-1, limit_val_batches=0,
        callbacks=[clock, budget, TimeCosine(WARMUP, FLOOR), log], **kwargs,
    )  # fmt: skip
    L.seed_everything(0)
    module = tiny_module(dimension, scheduler="cosine", lr=BASE_LR)
    fit.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return fit, budget, log


def final_lr(fit: L.Trainer) -> float:
    return fit.optimizers[0].param_groups[0]["lr"]


@pytest.mark.parametrize(("dimension", "seconds_per_step"), [("1d", 1.0), ("2d", 2.0)])
def test_cosine_follows_counted_time_and_ends_on_its_floor(
    dimension, seconds_per_step, datamodule_factory, tmp_path
):
    """A fast net (1 s a step, 10 steps) and a slow one (2 s, 5 steps) get the same
    rate at the same counted time, and both end the budget on the floor."""
    fit, budget, log = fit_on_budget(dimension, seconds_per_step, tmp_path, datamodule_factory())
    assert budget.train_seconds == BUDGET
    assert fit.global_step == BUDGET / seconds_per_step
    for counted, lr in log.rates:
        assert lr == pytest.approx(BASE_LR * expected_factor(counted / BUDGET), rel=1e-9)
    rates = dict(log.rates)
    assert rates[0.0] == 0.0 and rates[2.0] == pytest.approx(BASE_LR)  # warm-up done at 20 %
    assert rates[6.0] == pytest.approx(BASE_LR * (FLOOR + 1) / 2)  # the cosine's midpoint
    assert final_lr(fit) == pytest.approx(BASE_LR * FLOOR)


def test_cosine_is_the_same_after_a_kill_and_resume(datamodule_factory, tmp_path):
    """Killed after 4 of 10 counted seconds and resumed from the checkpoint (with a
    fresh clock): the rates continue where the count stopped and reach the floor."""
    whole, _, uninterrupted = fit_on_budget("1d", 1.0, tmp_path / "whole", datamodule_factory())
    first, _, before = fit_on_budget(
        "1d", 1.0, tmp_path / "killed", datamodule_factory(), max_steps=4
    )
    ckpt = tmp_path / "killed.ckpt"
    first.save_checkpoint(ckpt)
    resumed, budget, after = fit_on_budget(
        "1d", 1.0, tmp_path / "resumed", datamodule_factory(), ckpt_path=str(ckpt)
    )
    before, after = before.rates, after.rates
    assert [c for c, _ in before] == [0, 1, 2, 3] and [c for c, _ in after] == [4, 5, 6, 7, 8, 9]
    assert before + after == uninterrupted.rates  # the same counts, so the same rates
    assert budget.train_seconds == BUDGET and resumed.global_step == whole.global_step == 10
    assert final_lr(resumed) == pytest.approx(BASE_LR * FLOOR)


def test_without_a_budget_the_cosine_runs_over_the_step_count(datamodule_factory, tmp_path):
    log = RateLog()
    fit = trainer(
        tmp_path, max_steps=5, limit_val_batches=0, callbacks=[TimeCosine(WARMUP, FLOOR), log]
    )
    fit.fit(tiny_module("1d", scheduler="cosine", lr=BASE_LR), datamodule=datamodule_factory())
    assert [step for step, _ in log.rates] == [0, 1, 2, 3, 4]
    for step, lr in log.rates:
        assert lr == pytest.approx(BASE_LR * expected_factor(step / 5), rel=1e-9)
    assert final_lr(fit) == pytest.approx(BASE_LR * FLOOR)


def test_the_module_adds_the_schedule_with_its_defaults(datamodule_factory, tmp_path):
    """``scheduler="cosine"`` alone, on a budget: warm-up from 0, cosine to 0 at the end."""
    clock = StepClock(1.0)
    budget = TrainingBudget(4, clock=clock.perf_counter)
    log = RateLog(budget)
    fit = trainer(tmp_path, max_epochs=-1, limit_val_batches=0, callbacks=[clock, budget, log])
    fit.fit(tiny_module("1d", scheduler="cosine", lr=BASE_LR), datamodule=datamodule_factory())
    lrs = [lr for _, lr in log.rates]
    assert len(lrs) == 4 and lrs[0] == 0.0 and lrs[1] > lrs[2] > lrs[3] > 0
    assert final_lr(fit) == 0.0
    schedules = [c for c in fit.callbacks if isinstance(c, TimeCosine)]
    assert len(schedules) == 1 and schedules[0].record()["lr_schedule_unit"] == "budget_seconds"


def test_cosine_refuses_shapes_out_of_range():
    # (a run with no end at all: test_modules.py::test_cosine_schedule_without_a_step_count...)
    with pytest.raises(ScheduleError, match="warmup_fraction < 1"):
        TimeCosine(warmup_fraction=1.0)
    with pytest.raises(ScheduleError, match="floor <= 1"):
        TimeCosine(floor=-0.1)


def test_ablation_fit_runs_cosine_and_ema_on_a_time_budget_alone(fit_env, tmp_path):
    """The sweeps' setting (max_time, no step count) with both options, through the CLI:
    the rate ends on its floor, the record says what was evaluated."""
    args = ("--model.scheduler=cosine", "--model.ema_decay=0.9")
    main(test_resume_and_errors.fit_args(tmp_path, fit_env, *args))
    run = tmp_path / "runs" / "adhoc" / "run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["scheduler"] == "cosine" and summary["ema_decay"] == 0.9  # W&B config too
    fairness = summary["fairness"]
    assert fairness["train_seconds"] >= fairness["budget_seconds"] == 5
    assert fairness["lr_schedule"] == "cosine" and fairness["lr_schedule_unit"] == "budget_seconds"
    assert fairness["lr_final_factor"] == 0.0
    assert fairness["weights"] == "ema" and fairness["ema_decay"] == 0.9
    assert fairness["ema_updates"] == fairness["steps"] > 0
    last = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert last["current_model_state"].keys() == last["state_dict"].keys()


@pytest.mark.parametrize("seconds_per_step", [1.0, 7.0])
def test_under_a_step_budget_the_cosine_follows_steps_whatever_the_step_time(
    seconds_per_step, datamodule_factory, tmp_path
):
    """A calibrated (or steps) budget of 10 steps: the rate at step k is the curve at
    k / 10, on a fast machine and a slow one alike, and the run ends on the floor."""
    clock = StepClock(seconds_per_step)
    budget = TrainingBudget(75, clock=clock.perf_counter, unit="calibrated", max_steps=10)
    log = RateLog()
    fit = trainer(
        tmp_path, max_epochs=-1, limit_val_batches=0,
        callbacks=[clock, budget, TimeCosine(WARMUP, FLOOR), log],
    )  # fmt: skip
    fit.fit(tiny_module("1d", scheduler="cosine", lr=BASE_LR), datamodule=datamodule_factory())
    assert fit.global_step == 10 and budget.train_seconds == 10 * seconds_per_step
    assert [step for step, _ in log.rates] == list(range(10))
    for step, lr in log.rates:
        assert lr == pytest.approx(BASE_LR * expected_factor(step / 10), rel=1e-9)
    assert final_lr(fit) == pytest.approx(BASE_LR * FLOOR)
