"""W&B logging that resumes cleanly: one run, its steps the training steps, never backwards.

Lightning's ``WandbLogger`` lets W&B count its own ``_step`` (which restarts at 0
in every resumed segment) and tags rows with ``trainer/global_step``; callbacks
and validation log at slightly different steps. :class:`SteppedWandbLogger` logs
every row at the training step (``_step`` = ``trainer/global_step``), never below
a step already written, and a resumed run rewinds the W&B run to the step of the
checkpoint it resumes from (``resume_from``), so the rows a killed stretch logged
after its last save are dropped, as ``metrics.csv`` drops them.
"""

from __future__ import annotations

from collections.abc import Mapping

from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

STEP_KEY = "trainer/global_step"


class SteppedWandbLogger(WandbLogger):
    """``WandbLogger`` with rows at the training step.

    Args:
        rewind_to: ``(run id, step)`` of a run to continue from a checkpoint at
            ``step``; None starts (or, with ``id``, continues) a run as W&B does.
        **kwargs: ``WandbLogger`` arguments.
    """

    def __init__(self, *args, rewind_to: tuple[str, int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_step = -1
        if rewind_to is not None:
            run_id, step = rewind_to
            # W&B refuses resume_from together with an id or a resume mode.
            for key in ("id", "resume"):
                self._wandb_init.pop(key, None)
            self._wandb_init["resume_from"] = f"{run_id}?_step={step}"
            self._last_step = step + 1

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        step = max(self._last_step, 0 if step is None else step)
        self._last_step = step
        self.experiment.log({**metrics, STEP_KEY: step}, step=step)
