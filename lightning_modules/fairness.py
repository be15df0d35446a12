"""The fairness record of a run: evidence that two runs of a sweep differ only in
what the sweep varies (DESIGN.md, the one fairness rule).

:class:`FairnessRecord` watches the first :data:`FINGERPRINT_BATCHES` training
batches: it hashes their loss-region stems after augmentation (two runs with the
same data seed must agree bit for bit, whatever their net) and measures which
share of the net's loss-region outputs had their whole receptive field in real
audio. With the budget's figures (:class:`lightning_modules.budget.TrainingBudget`)
it becomes the ``fairness`` object of ``summary.json`` and of the W&B summary.
"""

from __future__ import annotations

import hashlib
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback

from lightning_modules.budget import TrainingBudget

FINGERPRINT_BATCHES = 32


def real_outputs(
    padding: tuple[int, int], reach: tuple[int, int], segment: int, context: int
) -> int:
    """How many of a window's ``segment`` loss-region outputs have their receptive
    field (``reach`` samples before and after) inside real audio, for a window of
    ``context + segment + context`` samples with ``padding`` zeros at its ends."""
    window = segment + 2 * context
    first = max(0, padding[0] + reach[0] - context)
    last = min(segment - 1, window - padding[1] - 1 - reach[1] - context)
    return max(0, last - first + 1)


def stems_digest(stems: torch.Tensor) -> str:
    """SHA-256 of a float32 tensor's bytes (on the CPU, contiguous)."""
    array = np.ascontiguousarray(stems.detach().float().cpu().numpy())
    return hashlib.sha256(array.tobytes()).hexdigest()


class FairnessRecord(Callback):
    """Fingerprint the data and measure real context over the first training batches.

    Needs the DataModule's ``train_set`` (with ``padding(position)``, ``segment``
    and ``context``) and ``last_positions`` (the stream positions of the batch
    in flight), and a module whose ``net`` has ``reach_samples()``.
    """

    def __init__(self, batches: int = FINGERPRINT_BATCHES):
        self.batches = batches
        self._observe = None
        self.digests: dict[int, str] = {}
        self.real = 0
        self.outputs = 0
        self.padded = 0  # items whose window reaches past a track's start or end

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # The record's own work (hashing, context accounting) is timed apart from the
        # budget's training time, so the instrumentation costs no cell any training.
        budget = next((c for c in trainer.callbacks if isinstance(c, TrainingBudget)), None)
        self._observe = budget.timed("instrumentation", self._observe_batch) if budget else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        (self._observe or self._observe_batch)(trainer, pl_module, batch)

    def _observe_batch(self, trainer, pl_module, batch) -> None:
        datamodule = trainer.datamodule
        positions = getattr(datamodule, "last_positions", None)
        if not positions:
            return
        index = positions[0] // (len(positions) * trainer.world_size)
        if index >= self.batches or index in self.digests:
            return
        dataset = datamodule.train_set
        segment, context = dataset.segment, dataset.context
        self.digests[index] = stems_digest(batch[..., context : context + segment])
        reach = pl_module.net.reach_samples()
        for position in positions:
            padding = dataset.padding(position)
            self.real += real_outputs(padding, reach, segment, context)
            self.outputs += segment
            self.padded += any(padding)

    def record(self, pl_module: L.LightningModule, datamodule) -> dict[str, Any]:
        """The data part of the fairness record."""
        digest = hashlib.sha256()
        for index in sorted(self.digests):
            digest.update(self.digests[index].encode())
        rate = pl_module.hparams.sample_rate
        net = pl_module.net
        segment = datamodule.segment_samples
        return {
            "data_fingerprint": digest.hexdigest() if self.digests else None,
            "fingerprint_batches": len(self.digests),
            # per batch, so runs that stopped before 32 batches compare on what they share
            "batch_digests": [self.digests[index][:16] for index in sorted(self.digests)],
            "data_seed": datamodule.seed,
            "segment_seconds": segment / rate,
            "context_seconds": datamodule.context_samples / rate,
            "net_context_seconds": max(net.context_samples(segment), *net.reach_samples()) / rate,
            "real_context_fraction": self.real / self.outputs if self.outputs else None,
            "padded_items": self.padded,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "digests": dict(self.digests),
            "real": self.real,
            "outputs": self.outputs,
            "padded": self.padded,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.digests = {int(k): v for k, v in state_dict["digests"].items()}
        self.real, self.outputs = int(state_dict["real"]), int(state_dict["outputs"])
        self.padded = int(state_dict.get("padded", 0))
