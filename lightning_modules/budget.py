"""The time budget of a run: training time only, counted the same for every cell.

:class:`TrainingBudget` replaces Lightning's ``Timer`` (which counts validation,
checkpoint writes, logging and restarts). It counts the training steps (forward,
backward, optimizer, and the wait for the next training batch) and nothing
else: validation, checkpoint writing, logging and start-up are timed apart and
reported as excluded time. Validation runs on a schedule of counted training
time, so shallow and deep cells validate equally often in time. The counted
time is part of the checkpoint, so a resumed run carries it, and a killed run
that resumes from its ``last.ckpt`` counts exactly the training its saved state
contains.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

EXCLUDED_KINDS = ("startup", "validation", "checkpoint", "logging")


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


class TrainingBudget(Callback):
    """Count training time, stop at the budget, validate every ``val_every_seconds``.

    Args:
        seconds: the budget in training seconds; None trains without one.
        val_every_seconds: validate each time counted training time crosses a
            multiple of this; None keeps Lightning's own validation schedule.
        clock: the time source (tests pass a fake one).
    """

    def __init__(
        self,
        seconds: float | None,
        val_every_seconds: float | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        if val_every_seconds is not None and val_every_seconds <= 0:
            raise ValueError(
                f"val_every_seconds must be a positive number of training seconds, got "
                f"{val_every_seconds}: set --run.val_every_seconds."
            )
        self.seconds = seconds
        self.val_every_seconds = val_every_seconds
        self.clock = clock
        self.train_seconds = 0.0
        self.excluded = dict.fromkeys(EXCLUDED_KINDS, 0.0)
        self.steps = 0
        self.max_step_seconds = 0.0
        self.validations = 0
        self._intervals_validated = 0
        self._mark: float | None = None  # end of the last counted moment
        self._since: float | None = None  # start of the stretch's start-up
        self._validation_started: float | None = None
        self._excluded_in_validation = 0.0
        self._validate_now = False

    # ---- what the run reports -----------------------------------------------------
    @property
    def excluded_seconds(self) -> float:
        return sum(self.excluded.values())

    def record(self) -> dict[str, Any]:
        """The budget's part of the fairness record."""
        return {
            "budget_seconds": self.seconds,
            "train_seconds": self.train_seconds,
            "excluded_seconds": self.excluded_seconds,
            "excluded": dict(self.excluded),
            "counted_steps": self.steps,
            "max_step_seconds": self.max_step_seconds,
            "val_every_seconds": self.val_every_seconds,
            "validations": self.validations,
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
        self._since = self.clock()
        for logger in trainer.loggers:
            if not getattr(logger.log_metrics, "_budget_timed", False):
                logger.log_metrics = self.timed("logging", logger.log_metrics)
                logger.log_metrics._budget_timed = True
        if self.val_every_seconds is not None:
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
            if trainer.should_stop and trainer.fit_loop._can_stop_early:
                return True
            return self._validate_now

        loop._should_check_val_fx = should_check_val

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
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
        self.max_step_seconds = max(self.max_step_seconds, step)
        stop = self.seconds is not None and self.train_seconds >= self.seconds
        due = (
            self.val_every_seconds is not None
            and self.train_seconds >= (self._intervals_validated + 1) * self.val_every_seconds
        )
        # Every rank takes rank 0's count and decisions: all count the same training
        # time (the one the checkpoint keeps) and stop and validate at the same step.
        self.train_seconds, stop, due = trainer.strategy.broadcast((self.train_seconds, stop, due))
        self._validate_now = due
        if stop:
            trainer.should_stop = True

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
        if self.val_every_seconds is not None:
            # The next validation is due at the next multiple of the interval.
            self._intervals_validated = int(self.train_seconds // self.val_every_seconds)
        self._validate_now = False

    # ---- resume -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "train_seconds": self.train_seconds,
            "excluded": dict(self.excluded),
            "steps": self.steps,
            "max_step_seconds": self.max_step_seconds,
            "validations": self.validations,
            "intervals_validated": self._intervals_validated,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.train_seconds = float(state_dict["train_seconds"])
        self.excluded = {**self.excluded, **state_dict["excluded"]}
        self.steps = int(state_dict["steps"])
        self.max_step_seconds = float(state_dict["max_step_seconds"])
        self.validations = int(state_dict["validations"])
        self._intervals_validated = int(state_dict["intervals_validated"])
