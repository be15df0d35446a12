"""A learning-rate schedule over the time budget: cosine with a linear warm-up.

Under a ``time`` budget every cell trains for the same counted seconds at its own
step rate, so a schedule over steps would give a fast net and a slow one different
shapes, and ``max_time`` alone fixes no step count at all. :class:`TimeCosine` sets
the rate before every training step from the *progress* of the run on its budget's
clock (:class:`lightning_modules.budget.TrainingBudget`): counted training seconds
over the budget, or steps over the step budget of the step units, or, in a run with
no budget, the optimizer steps over the Trainer's step count.
The rate at a step is therefore a function of counted time alone, the same curve
for every cell, and correct across a kill and resume: the budget restores its
count from the checkpoint before the first resumed step. At the end of the budget
the progress is 1 and the rate is the floor.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from ablation.errors import AblationError
from lightning_modules.budget import TrainingBudget

WARMUP_FRACTION = 0.02
FLOOR = 0.0
# The base rate of a parameter group: torch's schedulers keep it here too, and the
# optimizer's state_dict carries it, so a resume restores it with the optimizer.
BASE = "initial_lr"


class ScheduleError(AblationError):
    """A schedule that cannot know how far the run has come."""


def cosine_factor(progress: float, warmup_fraction: float, floor: float) -> float:
    """The rate as a fraction of the base rate at ``progress`` (0 at the start, 1 at
    the end): linear from 0 to 1 over ``warmup_fraction``, then half a cosine down to
    ``floor``; ``floor`` from there on."""
    progress = min(max(progress, 0.0), 1.0)
    if progress < warmup_fraction:
        return progress / warmup_fraction
    decay = (progress - warmup_fraction) / (1.0 - warmup_fraction)
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * decay))


def _find_budget(trainer: L.Trainer) -> TrainingBudget | None:
    budgets = [c for c in trainer.callbacks if isinstance(c, TrainingBudget)]
    return budgets[0] if budgets and budgets[0].limit is not None else None


class TimeCosine(Callback):
    """Cosine learning rate with linear warm-up over the run's counted training time.

    Args:
        warmup_fraction: share of the budget over which the rate rises linearly from 0
            to the configured rate, in [0, 1).
        floor: the rate at the end of the budget, as a fraction of the configured rate.
    """

    def __init__(self, warmup_fraction: float = WARMUP_FRACTION, floor: float = FLOOR):
        if not 0.0 <= warmup_fraction < 1.0 or not 0.0 <= floor <= 1.0:
            raise ScheduleError(
                f"the cosine schedule needs 0 <= warmup_fraction < 1 and 0 <= floor <= 1, got "
                f"warmup_fraction={warmup_fraction} and floor={floor}: pass values in range."
            )
        self.warmup_fraction = warmup_fraction
        self.floor = floor
        self.unit = "steps"
        self._budget: TrainingBudget | None = None
        self._steps = math.inf
        self._last_factor: float | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._budget = _find_budget(trainer)
        budget = self._budget
        clock = "steps" if budget is not None and budget.counts_steps else "seconds"
        self.unit = "steps" if budget is None else f"budget_{clock}"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._budget is None:
            self._steps = trainer.estimated_stepping_batches
            if not math.isfinite(self._steps):
                raise ScheduleError(
                    "the cosine schedule needs to know where the run ends, but it has neither "
                    "a training-time budget (trainer.max_time under `ablation fit`) nor "
                    "max_epochs nor max_steps: set one of them, or use scheduler=constant."
                )

    def progress(self, trainer: L.Trainer) -> float:
        """How far the run has come, 0 to 1: the budget's count over its limit (seconds or
        steps), else the Trainer's steps over its step count."""
        if self._budget is not None:
            return self._budget.progress()
        return trainer.global_step / self._steps

    def _apply(self, trainer: L.Trainer) -> None:
        factor = cosine_factor(self.progress(trainer), self.warmup_fraction, self.floor)
        for optimizer in trainer.optimizers:
            for group in optimizer.param_groups:
                group["lr"] = group.setdefault(BASE, group["lr"]) * factor
        self._last_factor = factor

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        # Before the step: its rate comes from the time counted before it, the same
        # (rank 0's, broadcast) count on every rank.
        self._apply(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The rate the run ended on (the floor, once the budget is spent), for the record.
        self._apply(trainer)

    def record(self) -> dict[str, Any]:
        """The schedule's part of the fairness record."""
        return {
            "lr_schedule": "cosine",
            "lr_schedule_unit": self.unit,
            "lr_warmup_fraction": self.warmup_fraction,
            "lr_floor": self.floor,
            "lr_final_factor": self._last_factor,
        }
