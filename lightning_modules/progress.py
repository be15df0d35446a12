"""The progress line of a training run: how far through its budget, at which step, at
which loss. Lightning's bar counts the batches of an epoch, which says nothing of a run
trained to a time or step budget, and a bar in a log file (the demo's and the sweep's
children write to pipes) is one endless line; so a line is printed at every tenth of
the budget (at most :data:`LINES` lines a run), or, without a budget, every
:data:`EVERY_SECONDS` of counted training. On a terminal without Lightning's bar the
line is also redrawn in place between those, as tqdm does."""

from __future__ import annotations

import math
import sys
import time

import lightning as L
from lightning.pytorch.callbacks import Callback

from lightning_modules.budget import TrainingBudget

LINES = 10
EVERY_SECONDS = 60.0
REDRAW_SECONDS = 1.0  # on a terminal


class ProgressLine(Callback):
    """Print ``<run>: 40% of the budget (30 of 75 s counted training), step 120, loss 0.012``
    at each tenth of the budget, on rank 0. Stateless: a resumed run goes on from where its
    budget stands (the budget's own state says that)."""

    def __init__(self, name: str, budget: TrainingBudget):
        self.name, self.budget, self.shown = name, budget, -1
        self.live, self.drawn, self.open = False, 0.0, False

    def _tick(self) -> int:
        progress = self.budget.progress()
        if progress is None:
            return int(self.budget.train_seconds // EVERY_SECONDS)
        return min(LINES, math.floor(progress * LINES))

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.shown = self._tick()  # a resumed run does not repeat the lines it printed
        # Lightning's own bar redraws the same terminal line: then only the lines that stay
        self.live = sys.stdout.isatty() and trainer.progress_bar_callback is None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if trainer.global_rank != 0:
            return
        tick = self._tick()
        stays = tick > self.shown
        if not (stays or (self.live and time.monotonic() - self.drawn >= REDRAW_SECONDS)):
            return
        self.shown = max(self.shown, tick)
        line = f"{self.name}: {self.where()}, step {trainer.global_step}, loss {_loss(outputs)}"
        self._write(line, stays)

    def _write(self, line: str, stays: bool) -> None:
        """A line that stays (in a log: the only kind), or one redrawn over on a terminal."""
        if not self.live:
            print(line, flush=True)
            return
        end = "\n" if stays else ""
        sys.stdout.write(f"\r\033[K{line}{end}")  # to the line's start, clear, write
        sys.stdout.flush()
        self.drawn, self.open = time.monotonic(), not stays

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.open:  # end the redrawn line, so what follows starts on its own
            print(flush=True)
            self.open = False

    def where(self) -> str:
        """How far the run is, on its budget's clock."""
        budget = self.budget
        counted = f"{budget.train_seconds:.0f} s counted training"
        if budget.limit is None:
            return f"{counted} (no budget)"
        if budget.counts_steps:
            done = f"{budget.count:.0f} of {budget.limit:.0f} steps"
        else:
            done = f"{budget.count:.0f} of {budget.limit:.0f} s counted training"
        return f"{budget.progress():.0%} of the budget ({done})"


def _loss(outputs) -> str:
    loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
    return "n/a" if loss is None else f"{float(loss):.4g}"
