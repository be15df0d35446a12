"""Turning a run's budget settings into what its :class:`TrainingBudget` counts.

- every unit: the training FLOPs of one step (forward and backward on the real
  batch: the window with its context, the batch size, every rank) and the inference
  FLOPs per second of separated audio, measured once (:mod:`ablation.nets.flops`);
- ``steps``: ``run.budget_steps``;
- ``flops``: ``run.budget_flops`` over the FLOPs of a step;
- ``calibrated``: ``trainer.max_time`` over the cell's seconds per step in the
  calibration table, measured into the table first when it lacks the cell
  (:mod:`lightning_modules.calibration`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning as L

from ablation.calibration import (
    CALIBRATION_FILE,
    budget_steps,
    find_entry,
    write_entry,
)
from ablation.nets.flops import inference_flops_per_second, training_step_flops
from lightning_modules.budget import BudgetError, TrainingBudget


class BudgetPlan:
    """The budget of one run, resolved from its settings; see the module docstring."""

    def __init__(self, module, datamodule, trainer: L.Trainer, budget: TrainingBudget, run):
        self.module, self.datamodule, self.trainer = module, datamodule, trainer
        self.budget, self.run = budget, run
        self.key: str | None = None
        self.table: Path | None = None

    @property
    def window_samples(self) -> int:
        data = self.datamodule
        return data.segment_samples + 2 * data.window_context_samples

    def measured_with(self) -> dict[str, Any]:
        """What a step's time depends on besides the net (see ablation.calibration)."""
        return {
            "batch_size": int(self.datamodule.hparams.batch_size),
            "window_samples": self.window_samples,
            "precision": str(self.trainer.precision),
            "world_size": self.trainer.world_size,
        }

    def measure_flops(self) -> None:
        data, net = self.datamodule, self.module.net
        channels, context = data.hparams.channels, data.window_context_samples
        per_rank = training_step_flops(
            net, data.hparams.batch_size, channels, self.window_samples, context
        )
        self.budget.figures.update(
            train_flops_per_step=per_rank * self.trainer.world_size,
            inference_flops_per_second=inference_flops_per_second(
                net, channels, data.hparams.sample_rate, data.segment_samples, context
            ),
        )

    def resolve(self, key: str, sweep_dir: Path) -> None:
        """Set the step budget of the step units where the settings give it already."""
        unit, budget, run = self.budget.unit, self.budget, self.run
        if unit == "steps":
            if not run.budget_steps or run.budget_steps < 1:
                raise BudgetError(
                    f"budget_unit=steps needs --run.budget_steps, a positive number of "
                    f"steps; got {run.budget_steps!r}."
                )
            budget.max_steps = int(run.budget_steps)
        elif unit == "flops":
            if not run.budget_flops or run.budget_flops <= 0:
                raise BudgetError(
                    f"budget_unit=flops needs --run.budget_flops, a positive number of "
                    f"training FLOPs (e.g. 1e15); got {run.budget_flops!r}."
                )
            per_step = budget.figures["train_flops_per_step"]
            budget.max_steps = max(1, math.floor(run.budget_flops / per_step))
            budget.figures["budget_flops"] = float(run.budget_flops)
        elif unit == "calibrated":
            if budget.seconds is None:
                raise BudgetError(
                    "budget_unit=calibrated turns a time budget into steps, but the run has "
                    "none: set trainer.max_time (e.g. '00:03:00:00')."
                )
            self.key = key
            self.table = Path(run.calibration or Path(sweep_dir) / CALIBRATION_FILE)
            entry = find_entry(self.table, key, self.measured_with())
            if entry is not None:
                self._apply(entry)

    def calibrate_if_needed(self) -> None:
        """Measure the cell into the table when it lacks it (``calibrated`` only)."""
        if self.budget.unit != "calibrated" or self.budget.max_steps is not None:
            return
        from lightning_modules.calibration import calibrate

        print(f"{self.key}: not in {self.table}, calibrating its step time here", flush=True)
        entry = calibrate(self.module, self.datamodule, self.trainer, self.measured_with())
        write_entry(self.table, self.key, entry)
        self._apply(entry)

    def _apply(self, entry: dict[str, Any]) -> None:
        budget = self.budget
        budget.max_steps = budget_steps(budget.seconds, entry)
        budget.figures["calibration"] = {
            "table": str(self.table),
            "cell": self.key,
            "device": entry.get("device"),
            "seconds_per_step": entry["seconds_per_step"],
        }
        print(
            f"{self.key}: {entry['seconds_per_step']:.4g} s a step on {entry.get('device')} "
            f"-> {budget.max_steps} steps for {budget.seconds:g} s (calibration {self.table})",
            flush=True,
        )
