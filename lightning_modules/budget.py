"""The budget of a run, in a unit that measures the work, counted the same for every cell.

:class:`TrainingBudget` replaces Lightning's ``Timer`` (which counts validation,
checkpoint writes, logging and restarts). It counts the training steps (forward,
backward, optimizer, and the wait for the next training batch) and nothing
else: validation, checkpoint writing, logging, the fairness record's own work and
start-up are timed apart and reported as excluded time.

A run stops at its budget in one of four units (:data:`BUDGET_UNITS`):

- ``time``: counted training seconds (the seed study's unit); the answer depends on
  the machine's speed and load;
- ``calibrated``: a time budget turned once into a step count per cell, measured on
  a named device (:mod:`lightning_modules.calibration`);
- ``steps``: the same number of optimizer steps for every cell;
- ``flops``: the same training FLOPs for every cell, turned into steps with the
  measured FLOPs of one step (:mod:`ablation.nets.flops`).

The three step units stop, validate and keep their budget-fraction checkpoints at
steps, so two runs of one cell do the same at the same step on any machine; the
``time`` unit does all three on counted seconds. Every run records counted seconds,
steps, items seen and training FLOPs whichever unit stopped it. The counts are part
of the checkpoint, so a resumed run carries them, and a killed run that resumes from
its ``last.ckpt`` counts exactly the training its saved state contains.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from ablation.errors import AblationError

EXCLUDED_KINDS = ("startup", "validation", "checkpoint", "logging", "instrumentation")
BUDGET_UNITS = ("time", "calibrated", "steps", "flops")
STEP_UNITS = BUDGET_UNITS[1:]
# The budget fractions at which a run keeps a checkpoint (``budget-0.125.ckpt`` ...), so
# one run answers for an eighth, a quarter, half and all of its budget.
CHECKPOINT_FRACTIONS = (0.125, 0.25, 0.5, 1.0)


class BudgetError(AblationError, ValueError):
    """A budget that cannot be counted, phrased for the user."""


def fraction_name(fraction: float) -> str:
    """The checkpoint file stem of a budget fraction, e.g. ``budget-0.125``."""
    return f"budget-{fraction:g}"


def check_fractions(fractions) -> tuple[float, ...]:
    """Sorted, distinct fractions in (0, 1], or a :class:`BudgetError`."""
    chosen = tuple(sorted({float(f) for f in fractions or ()}))
    if any(not 0.0 < f <= 1.0 for f in chosen):
        raise BudgetError(
            f"budget fractions must lie in (0, 1], got {list(fractions)}: set "
            f"--run.checkpoint_fractions, e.g. [0.125, 0.25, 0.5, 1.0]."
        )
    return chosen


def budget_seconds(max_time: str | dict | datetime.timedelta | float | None) -> float | None:
    """``trainer.max_time`` in seconds: ``"DD:HH:MM:SS"``, a dict of ``timedelta``
    arguments, a ``timedelta``, a number of seconds, or None (no budget)."""
    if max_time is None or isinstance(max_time, int | float):
        return None if max_time is None else float(max_time)
    if isinstance(max_time, datetime.timedelta):
        return max_time.total_seconds()
    if isinstance(max_time, dict):
        return datetime.timedelta(**max_time).total_seconds()
    parts = str(max_time).split(":")
    if len(parts) != 4 or not all(p.strip().isdigit() for p in parts):
        raise ValueError(
            f"trainer.max_time must be 'DD:HH:MM:SS' (e.g. '00:03:00:00' for 3 hours), "
            f"got {max_time!r}."
        )
    days, hours, minutes, seconds = (int(p) for p in parts)
    return datetime.timedelta(days, seconds, 0, 0, minutes, hours).total_seconds()


def no_budget(budget: TrainingBudget, trainer_config: dict) -> str | None:
    """The warning for a run that nothing stops: no time budget, no step budget, and
    Lightning's own caps unset (1000 epochs) or turned off (-1: forever); else None."""
    caps = [trainer_config.get("max_steps"), trainer_config.get("max_epochs")]
    if budget.counts_steps or budget.seconds is not None or any(c not in (None, -1) for c in caps):
        return None
    return (
        "no training budget: trainer.max_time is unset and so are trainer.max_steps and "
        "max_epochs, so this run trains for Lightning's 1000 epochs (or forever); pass "
        "--config sweeps/base.yaml (3 h of counted training) or --trainer.max_time=DD:HH:MM:SS"
    )


class TrainingBudget(Callback):
    """Count training, stop at the budget, validate and keep budget-fraction checkpoints
    on the budget's own clock (counted seconds for ``time``, steps otherwise).

    Args:
        seconds: the budget in training seconds (``time``), or the time budget a
            ``calibrated`` run turned into steps; None: no time budget.
        val_every_seconds: ``time`` unit: validate each time counted training time
            crosses a multiple of this; None keeps Lightning's own schedule.
        clock: the time source (tests pass a fake one).
        unit: one of :data:`BUDGET_UNITS`.
        max_steps: the step budget of the step units (None until resolved, e.g. by
            a calibration).
        val_every_steps: step units: validate every this many steps; None derives it
            from ``val_every_seconds`` as the same share of the budget, else keeps
            Lightning's own schedule.
        fractions: budget fractions at which :class:`RunCheckpoint` keeps a
            checkpoint (:data:`CHECKPOINT_FRACTIONS`).
    """

    def __init__(
        self,
        seconds: float | None,
        val_every_seconds: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
        unit: str = "time",
        max_steps: int | None = None,
        val_every_steps: int | None = None,
        fractions=CHECKPOINT_FRACTIONS,
    ):
        if unit not in BUDGET_UNITS:
            raise BudgetError(
                f"unknown budget unit {unit!r}: expected one of {', '.join(BUDGET_UNITS)} "
                f"(--run.budget_unit)."
            )
        for name, value in (("seconds", val_every_seconds), ("steps", val_every_steps)):
            if value is not None and value <= 0:
                raise BudgetError(
                    f"val_every_{name} must be a positive number of training {name}, got "
                    f"{value}: set --run.val_every_{name}."
                )
        self.seconds = seconds
        self.unit = unit
        self.max_steps = max_steps
        self.val_every_seconds = val_every_seconds
        self._val_every_steps = val_every_steps
        self.fractions = check_fractions(fractions)
        self.clock = clock
        # What the run's budget was resolved from (calibration entry, FLOPs of a step).
        self.figures: dict[str, Any] = {}
        self.train_seconds = 0.0
        self.excluded = dict.fromkeys(EXCLUDED_KINDS, 0.0)
        self.steps = 0
        self.items = 0
        self.max_step_seconds = 0.0
        self.validations = 0
        self.fractions_reached = 0
        self.due_fractions: tuple[float, ...] = ()
        self._intervals_validated = 0
        self._mark: float | None = None  # end of the last counted moment
        self._since: float | None = None  # start of the stretch's start-up
        self._validation_started: float | None = None
        self._excluded_in_validation = 0.0
        self._validate_now = False
        self._trainer: L.Trainer | None = None
        self._resumed_in_validation = False

    # ---- the budget's own clock -----------------------------------------------------
    @property
    def counts_steps(self) -> bool:
        return self.unit in STEP_UNITS

    @property
    def limit(self) -> float | None:
        """The budget in its clock's unit: steps for the step units, else seconds."""
        return self.max_steps if self.counts_steps else self.seconds

    @property
    def count(self) -> float:
        """Training done so far on the budget's clock."""
        return self.steps if self.counts_steps else self.train_seconds

    @property
    def val_every_steps(self) -> int | None:
        if self._val_every_steps is not None or not self.counts_steps:
            return self._val_every_steps
        if None in (self.val_every_seconds, self.seconds, self.max_steps):
            return None
        return max(1, round(self.max_steps * self.val_every_seconds / self.seconds))

    @property
    def val_every(self) -> float | None:
        """The validation interval on the budget's clock."""
        return self.val_every_steps if self.counts_steps else self.val_every_seconds

    def progress(self) -> float | None:
        """How far the run has come, 0 to 1 (None without a budget)."""
        limit = self.limit
        return None if not limit else self.count / limit

    def fraction_point(self, fraction: float) -> float:
        """Where on the budget's clock ``fraction`` of the budget is reached."""
        if self.counts_steps:
            return max(1, round(fraction * self.max_steps))
        return fraction * self.seconds

    # ---- what the run reports -----------------------------------------------------
    @property
    def excluded_seconds(self) -> float:
        return sum(self.excluded.values())

    def record(self) -> dict[str, Any]:
        """The budget's part of the fairness record."""
        return {
            "budget_unit": self.unit,
            # a step unit other than calibrated has no time budget, whatever max_time says
            "budget_seconds": self.seconds if self.unit in ("time", "calibrated") else None,
            "budget_steps": self.max_steps,
            **self.figures,
            "train_seconds": self.train_seconds,
            "excluded_seconds": self.excluded_seconds,
            "excluded": dict(self.excluded),
            "counted_steps": self.steps,
            "items_seen": self.items,
            "train_flops": self.steps * self.figures["train_flops_per_step"]
            if "train_flops_per_step" in self.figures
            else None,
            "max_step_seconds": self.max_step_seconds,
            "val_every_seconds": self.val_every_seconds,
            "val_every_steps": self.val_every_steps,
            "validations": self.validations,
            "checkpoint_fractions": list(self.fractions),
        }

    def exclude(self, kind: str, seconds: float) -> None:
        """Take ``seconds`` spent on ``kind`` inside a training stretch out of the count."""
        self.excluded[kind] += seconds
        if self._validation_started is not None:
            # Lightning logs validation's metrics before on_validation_end: the
            # validation's span, taken out whole at its end, already holds this time.
            self._excluded_in_validation += seconds
        elif self._mark is not None:
            self._mark += seconds

    def timed(self, kind: str, function: Callable) -> Callable:
        """``function`` with its time excluded as ``kind``."""

        def wrapper(*args, **kwargs):
            start = self.clock()
            try:
                return function(*args, **kwargs)
            finally:
                self.exclude(kind, self.clock() - start)

        return wrapper

    # ---- hooks ------------------------------------------------------------------------
    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        if self.counts_steps and self.max_steps is None:
            raise BudgetError(
                f"the {self.unit!r} budget has no step count: give --run.budget_steps "
                f"(steps), --run.budget_flops (flops) or a calibration (calibrated)."
            )
        self._since = self.clock()
        self._trainer = trainer
        for logger in trainer.loggers:
            if not getattr(logger.log_metrics, "_budget_timed", False):
                logger.log_metrics = self.timed("logging", logger.log_metrics)
                logger.log_metrics._budget_timed = True
        if self.val_every is not None:
            self._schedule_validation(trainer)

    def _schedule_validation(self, trainer: L.Trainer) -> None:
        # Lightning validates by batches or wall time; the budget's clock is neither,
        # so the training loop asks this callback instead.
        loop = trainer.fit_loop.epoch_loop
        if not hasattr(loop, "_should_check_val_fx"):
            raise RuntimeError(
                "this Lightning version has no TrainingEpochLoop._should_check_val_fx: "
                "install lightning>=2.4,<2.7 or leave --run.val_every_seconds unset."
            )

        def should_check_val(data_fetcher) -> bool:
            if not loop._should_check_val_epoch():
                return False
            if loop.restarting and self._resumed_in_validation:
                # Lightning asks again on a restart: "yes" tells it the checkpoint was taken
                # in this step's validation, so it neither runs a batch more in the epoch
                # nor logs the resumed steps under the previous step's label.
                return True
            if trainer.should_stop and trainer.fit_loop._can_stop_early:
                return True
            return self._validate_now

        loop._should_check_val_fx = should_check_val

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # A run resumed from a checkpoint taken at its last step trains no further.
        if self.limit is not None and self.count >= self.limit:
            trainer.should_stop = True

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._resumed_in_validation = False
        if self._mark is None:
            # The first batch of a stretch (fit start or resume): everything up to
            # now, the first data fetch included, was start-up.
            now = self.clock()
            self.excluded["startup"] += now - (self._since if self._since is not None else now)
            self._mark = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = self.clock()
        step = now - self._mark
        self._mark = now
        self.train_seconds += step
        self.steps += 1
        self.items += batch.shape[0] * trainer.world_size
        self.max_step_seconds = max(self.max_step_seconds, step)
        # Every rank takes rank 0's count: all count the same training time (the one the
        # checkpoint keeps), so all stop, validate and save at the same step.
        self.train_seconds = trainer.strategy.broadcast(self.train_seconds)
        limit, count, every = self.limit, self.count, self.val_every
        if limit is not None and count >= limit:
            trainer.should_stop = True
        self._validate_now = every is not None and count >= (self._intervals_validated + 1) * every
        reached = sum(count >= self.fraction_point(f) for f in self.fractions) if limit else 0
        self.due_fractions = self.fractions[self.fractions_reached : reached]
        self.fractions_reached = max(self.fractions_reached, reached)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._validation_started = self.clock()

    def on_validation_end(self, trainer, pl_module) -> None:
        if self._validation_started is None:
            return
        span = self.clock() - self._validation_started
        self._validation_started = None
        nested, self._excluded_in_validation = self._excluded_in_validation, 0.0
        self.excluded["validation"] += span - nested
        if self._mark is not None:
            self._mark += span
        self.validations += 1
        if self.val_every is not None:
            # The next validation is due at the next multiple of the interval.
            self._intervals_validated = int(self.count // self.val_every)
        self._validate_now = False

    # ---- resume -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "train_seconds": self.train_seconds,
            "excluded": dict(self.excluded),
            "steps": self.steps,
            "items": self.items,
            "max_step_seconds": self.max_step_seconds,
            "validations": self.validations,
            "intervals_validated": self._intervals_validated,
            "fractions_reached": self.fractions_reached,
            "saved_in_validation": bool(self._trainer is not None and self._trainer.validating),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = float(state_dict["train_seconds"])
        self.excluded = {**self.excluded, **state_dict["excluded"]}
        self.steps = int(state_dict["steps"])
        self.items = int(state_dict.get("items", 0))
        self.max_step_seconds = float(state_dict["max_step_seconds"])
        self.validations = int(state_dict["validations"])
        self._intervals_validated = int(state_dict["intervals_validated"])
        # Checkpoints of older runs: every fraction already passed counts as kept.
        reached = state_dict.get("fractions_reached")
        if reached is None and self.limit:
            reached = sum(self.count >= self.fraction_point(f) for f in self.fractions)
        self.fractions_reached = int(reached or 0)
        self._resumed_in_validation = bool(state_dict.get("saved_in_validation", False))
