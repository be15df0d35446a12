"""``metrics.csv`` that survives resume: every stretch of a run appends to it."""

from __future__ import annotations

import csv
import io

import lightning as L
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ablation.files import write_text
from lightning_modules.wandb_log import SteppedWandbLogger

STEP = "step"


class AppendingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing ``metrics.csv``; this one keeps its rows
    and its header, so the columns of earlier stretches stay aligned."""

    def _check_log_dir_exists(self) -> None:
        self.rows = 0
        if self._fs.isfile(self.metrics_file_path):
            fields, rows = self._read()
            self.metrics_keys, self.rows = sorted(fields), len(rows)

    def _read(self) -> tuple[list[str], list[dict[str, str]]]:
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            reader = csv.DictReader(file)
            return list(reader.fieldnames or []), list(reader)

    def save(self) -> None:
        self.rows += len(self.metrics)
        super().save()

    def truncate(self, rows: int | None, step: int) -> list[dict[str, str]]:
        """Keep the first ``rows`` rows, those the resumed checkpoint had logged (without
        that count, from an older checkpoint: the rows up to ``step``); returns them."""
        if not self._fs.isfile(self.metrics_file_path):
            return []
        fields, found = self._read()
        if rows is None:
            kept = [row for row in found if not row.get(STEP) or float(row[STEP]) <= step]
        else:
            kept = found[:rows]
        if len(kept) < len(found):
            # a kill here leaves metrics.csv whole; the next run removes the .tmp
            text = io.StringIO(newline="")
            writer = csv.DictWriter(text, fieldnames=fields)
            writer.writeheader()
            writer.writerows(kept)
            write_text(self.metrics_file_path, text.getvalue())
        self.rows = len(kept)
        return kept


class AppendingCSVLogger(CSVLogger):
    """CSVLogger whose ``metrics.csv`` keeps the rows of every earlier stretch."""

    @property
    @rank_zero_experiment
    def experiment(self) -> AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment


class TrimMetricsOnResume(Callback):
    """Records in each checkpoint how many rows ``metrics.csv`` held; a resume drops the
    rows logged after that save (the training a kill lost, retrained and logged again),
    so every step appears once, and replays the rows kept into the rewound W&B run."""

    def __init__(self):
        self.resumed_rows: int | None = None
        self._trainer: L.Trainer | None = None

    def _writer(self, trainer: L.Trainer) -> AppendingWriter | None:
        logger = next((lg for lg in trainer.loggers if isinstance(lg, AppendingCSVLogger)), None)
        return logger.experiment if logger is not None and trainer.is_global_zero else None

    def state_dict(self) -> dict[str, int]:
        writer = self._writer(self._trainer) if self._trainer is not None else None
        if writer is None:
            return {}
        # CSVLogger flushes every 100 steps: the rows logged before this save must be
        # on disk, or a kill would lose them while the count keeps their place.
        writer.save()
        return {"rows": writer.rows}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.resumed_rows = state_dict.get("rows")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        writer = self._writer(trainer)
        if writer is not None and (trainer.global_step > 0 or self.resumed_rows is not None):
            kept = writer.truncate(self.resumed_rows, trainer.global_step)
            for logger in trainer.loggers:
                if isinstance(logger, SteppedWandbLogger):
                    logger.replay(kept)
