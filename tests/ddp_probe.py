"""A test-only callback that each DDP rank uses to write what it trained on.

Passed to ``ablation fit`` with ``--trainer.callbacks=ddp_probe.RankProbe`` (``tests/``
on ``PYTHONPATH``), so the child ranks that Lightning starts load it as well.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch.callbacks import Callback

from lightning_modules.budget import TrainingBudget
from lightning_modules.fairness import stems_digest


class RankProbe(Callback):
    """Writes ``<out>/rank<R>.json``: stream positions and digests of the augmented
    batches this rank trained on, the tracks it decoded, and its budget's count."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.positions: list[list[int]] = []
        self.digests: list[str] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self.positions.append([int(p) for p in trainer.datamodule.last_positions])
        self.digests.append(stems_digest(batch))

    def on_fit_end(self, trainer, pl_module) -> None:
        budget = next(c for c in trainer.callbacks if isinstance(c, TrainingBudget))
        self.out.mkdir(parents=True, exist_ok=True)
        record = {
            "rank": trainer.global_rank,
            "world": trainer.world_size,
            "positions": self.positions,
            "digests": self.digests,
            "decoded": trainer.datamodule.cache.decoded,
            "train_seconds": budget.train_seconds,
            "validations": budget.validations,
            "global_step": trainer.global_step,
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
