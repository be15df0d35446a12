"""Measuring a cell's seconds per training step on this device, once per table entry.

The calibration trains a copy of the run's module on the run's own DataModule, with
the run's device, precision and gradient clipping, in a throw-away Trainer (no
logger, no checkpoint, no validation): a few warm-up steps, then timed steps until
both :data:`MIN_TIMED_STEPS` and :data:`MIN_TIMED_SECONDS` are reached. The timed
steps are the budget's own (forward, backward, optimizer and the wait for the next
batch). Nothing of the run changes: the copy is discarded and the random state is
restored, so a run that calibrated trains exactly as a run that read the table.
"""

from __future__ import annotations

import copy
import datetime
import tempfile
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from ablation.calibration import CalibrationError
from ablation.environment import device_name

WARMUP_STEPS = 3
MIN_TIMED_STEPS = 10
MIN_TIMED_SECONDS = 10.0
MAX_TIMED_STEPS = 500


class StepTimer(Callback):
    """Times the training steps after ``warmup`` of them, then stops the Trainer."""

    def __init__(self, warmup: int, min_steps: int, min_seconds: float, max_steps: int):
        self.warmup, self.min_steps, self.min_seconds = warmup, min_steps, min_seconds
        self.max_steps = max_steps
        self.steps = 0
        self.timed = 0
        self._start: float | None = None
        self.seconds = 0.0

    def _now(self, pl_module: L.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self.steps += 1
        if self.steps == self.warmup:
            self._start = self._now(pl_module)
            return
        if self._start is None:
            return
        self.timed = self.steps - self.warmup
        self.seconds = self._now(pl_module) - self._start
        enough = self.timed >= self.min_steps and self.seconds >= self.min_seconds
        if enough or self.timed >= self.max_steps:
            trainer.should_stop = True


def calibrate(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    trainer: L.Trainer,
    measured_with: dict[str, Any],
) -> dict[str, Any]:
    """A table entry for ``module``: its seconds per step on ``trainer``'s device.

    Args:
        module: the run's module (copied; the copy trains).
        datamodule: the run's DataModule.
        trainer: the run's Trainer, for device, precision and gradient clipping.
        measured_with: the run's batch size, window, precision and world size.
    """
    if trainer.world_size > 1:
        raise CalibrationError(
            f"calibrating needs one device, this run has {trainer.world_size}: calibrate "
            f"the cell in a one-device run first (same --run.calibration), or give a table."
        )
    device = trainer.strategy.root_device
    warmup = WARMUP_STEPS
    timer = StepTimer(warmup, MIN_TIMED_STEPS, MIN_TIMED_SECONDS, MAX_TIMED_STEPS)
    rng_devices = [device.index or 0] if device.type == "cuda" else []
    with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(rng_devices):
        calibration = L.Trainer(
            accelerator=device.type,
            devices=[device.index or 0] if device.type == "cuda" else 1,
            precision=trainer.precision,
            gradient_clip_val=trainer.gradient_clip_val,
            gradient_clip_algorithm=trainer.gradient_clip_algorithm,
            max_epochs=-1,
            max_steps=warmup + MAX_TIMED_STEPS,
            limit_val_batches=0,
            num_sanity_val_steps=0,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[timer],
            default_root_dir=scratch,
        )
        calibration.fit(copy.deepcopy(module), datamodule=datamodule)
    if timer.timed < 1:
        raise CalibrationError(
            f"the calibration timed no step ({timer.steps} steps ran): the training data "
            f"gives fewer than {warmup + 1} batches; add tracks or lower --data.batch_size."
        )
    return {
        "device": device_name(device),
        "seconds_per_step": timer.seconds / timer.timed,
        **measured_with,
        "warmup_steps": warmup,
        "timed_steps": timer.timed,
        "measured": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
