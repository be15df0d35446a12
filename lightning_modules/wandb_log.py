"""W&B logging that resumes cleanly: one run, its rows at the training steps, every row
up to the checkpoint kept.

Lightning's ``WandbLogger`` lets W&B count its own ``_step`` (which restarts at 0
in every resumed segment) and tags rows with ``trainer/global_step``; callbacks
and validation log at slightly different steps. :class:`SteppedWandbLogger` logs
every row at the training step, never below a step already written.

A killed process loses what W&B had not yet written (its service writes whole 32 KiB
blocks: a short run's rows may all be lost), so what W&B holds of a killed stretch is
unknown. A resumed run therefore rewinds its W&B run to before its first row and
replays ``metrics.csv`` up to the checkpoint (the rows every checkpoint has on disk),
then logs on: its history is the uninterrupted run's, whatever the kills lost. W&B
keeps the rows up to the step it rewinds to, so W&B's ``_step`` is the training step
plus one, 0 holding no row; ``trainer/global_step`` is the training step (the x axis
Lightning gives every chart). Media (audio and spectrogram examples) are not replayed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

STEP_KEY = "trainer/global_step"
CSV_STEP = "step"
FIRST_ROW = 1  # W&B's _step of training step 0; a rewind to _step 0 keeps no row


class SteppedWandbLogger(WandbLogger):
    """``WandbLogger`` with rows at the training step.

    Args:
        rewind_to: the id of a run to continue from a checkpoint: its history is
            rewound to before its first row, for :meth:`replay` to refill; None starts
            (or, with ``id``, continues) a run as W&B does.
        **kwargs: ``WandbLogger`` arguments.
    """

    def __init__(self, *args, rewind_to: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_step = -1
        if rewind_to is not None:
            # W&B refuses resume_from together with an id or a resume mode.
            for key in ("id", "resume"):
                self._wandb_init.pop(key, None)
            self._wandb_init["resume_from"] = f"{rewind_to}?_step={FIRST_ROW - 1}"

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = max(self._last_step, 0 if step is None else step)
        self._last_step = step
        self.experiment.log({**metrics, STEP_KEY: step}, step=step + FIRST_ROW)

    @rank_zero_only
    def replay(self, rows: Iterable[Mapping[str, str]]) -> None:
        """Log ``metrics.csv`` rows (strings, empty where a row has no value) again."""
        for row in rows:
            values = {k: float(v) for k, v in row.items() if k != CSV_STEP and v not in ("", None)}
            self.log_metrics(values, int(float(row[CSV_STEP])))
