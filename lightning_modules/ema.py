"""An exponential moving average of the weights: what validation, checkpoints and
evaluation use (Demucs trains this way).

:class:`WeightEMA` is Lightning's ``WeightAveraging`` with an EMA update after every
optimizer step. Lightning already swaps the average in for validation (so ``val/sdr``
and the best checkpoint judge the average) and writes it as the checkpoint's
``state_dict`` (what :func:`ablation.checkpoint.load_net`, ``ablation eval`` and
``ablation separate`` read), with the raw weights as ``current_model_state`` and the
count of updates as ``averaging_state``, so a resume from ``last.ckpt`` continues
both. What this subclass adds:

- the average lives on the training device (Lightning builds it in ``setup``, before
  the model is moved, which would copy every weight to the CPU at every step);
- a checkpoint written after training ended (``last.ckpt`` at the end) still holds
  the raw weights as ``current_model_state``: at the end the two sets are swapped
  rather than the average copied over the raw weights;
- validation and testing from a checkpoint say nothing: its ``state_dict`` is the
  average already.

The update's time is training work and counts in the budget like the step's.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import WeightAveraging
from torch.optim.swa_utils import get_ema_multi_avg_fn

from ablation.errors import AblationError

# Lightning's keys in a checkpoint written with weight averaging.
RAW_WEIGHTS = "current_model_state"
AVERAGING_STATE = "averaging_state"
# AveragedModel's prefix for the averaged module's entries in its own state_dict.
AVERAGED_PREFIX = "module."


class EMADecayError(AblationError):
    """An EMA decay outside (0, 1)."""


class WeightEMA(WeightAveraging):
    """EMA of the weights (and buffers) after every optimizer step.

    Args:
        decay: weight of the old average at each update, in (0, 1); 0.999 forgets
            over about 1000 steps.
    """

    def __init__(self, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise EMADecayError(
                f"the EMA decay must lie strictly between 0 and 1 (e.g. 0.999), got {decay}: "
                f"pass such a value, or 0 for no EMA where the option allows it."
            )
        super().__init__(use_buffers=True, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.decay = decay
        self._ended = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if stage == "fit":
            self._ended = False

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._average_model is not None:
            self._average_model.to(pl_module.device)

    @property
    def average(self) -> L.LightningModule | None:
        """The module holding the running average (the raw weights after training)."""
        return None if self._average_model is None else self._average_model.module

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        if not self._ended:
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not self._ended:
            super().on_validation_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Swapped, not copied: the module holds the average from now on, as Lightning
        # promises, and the raw weights stay at hand for a checkpoint written later.
        if self._average_model is not None and not self._ended:
            self._swap_models(pl_module)
            self._ended = True

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if not self._ended:
            super().on_save_checkpoint(trainer, pl_module, checkpoint)
            return
        # The module (checkpoint["state_dict"]) is the average; the averaged model raw.
        state = self._average_model.state_dict()
        checkpoint[RAW_WEIGHTS] = {
            name.removeprefix(AVERAGED_PREFIX): value
            for name, value in state.items()
            if name.startswith(AVERAGED_PREFIX)
        }
        checkpoint[AVERAGING_STATE] = {
            name: value for name, value in state.items() if not name.startswith(AVERAGED_PREFIX)
        }

    def on_load_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        if self._average_model is not None:
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def record(self) -> dict[str, Any]:
        """The EMA's part of the fairness record: the weights evaluated are the average."""
        updates = None
        if self._average_model is not None:
            updates = int(self._average_model.n_averaged)
        return {"weights": "ema", "ema_decay": self.decay, "ema_updates": updates}
