"""A test-only callback that each DDP rank uses to write its learning rates and the
weights it ends with, for the EMA and cosine options under DDP (tests/test_ema.py).

Passed to ``ablation fit`` with ``--trainer.callbacks=ddp_train_probe.RateAndWeightProbe``
(``tests/`` on ``PYTHONPATH``), so the child ranks that Lightning starts load it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from lightning.pytorch.callbacks import Callback

from lightning_modules.fairness import stems_digest


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's parameters, in order, as one float32 vector."""
    return stems_digest(torch.cat([p.detach().flatten() for p in module.parameters()]))


class RateAndWeightProbe(Callback):
    """Writes ``<out>/rank<R>.json``: the learning rate of every step and digests of
    the net the module holds after training (the average) and of the raw weights."""

    def __init__(self, out: str):
        self.out = Path(out)
        self.rates: list[float] = []

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.rates.append(optimizer.param_groups[0]["lr"])

    def on_fit_end(self, trainer, pl_module) -> None:
        from lightning_modules.ema import WeightEMA

        ema = next(c for c in trainer.callbacks if isinstance(c, WeightEMA))
        self.out.mkdir(parents=True, exist_ok=True)
        record = {
            "rates": self.rates,
            "average": weights_digest(pl_module.net),
            "raw": weights_digest(ema.average.net),
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))
