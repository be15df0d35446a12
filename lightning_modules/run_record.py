"""Records a run for W&B's dashboards and for ``make report``: its config at the start
(dimension, depth, preset, loss, scheduler, EMA decay, parameters, receptive field)
and its final figures at the end (best ``val/sdr``, ``val/mse``, epochs and steps done
inside the budget, training time, peak GPU memory, and the ``fairness`` record), named
the same in W&B and in ``summary.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger

from ablation.constants import MONITOR, VAL_LOSS, VAL_MSE
from ablation.environment import device_record, software_record
from ablation.files import write_json
from ablation.runs import SUMMARY, WANDB_RUN
from lightning_modules.budget import TrainingBudget
from lightning_modules.ema import WeightEMA
from lightning_modules.fairness import FairnessRecord
from lightning_modules.schedule import TimeCosine


def _find(trainer: L.Trainer, kind: type) -> Any:
    return next((c for c in trainer.callbacks if isinstance(c, kind)), None)


def fairness_record(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    """The ``fairness`` object: data fingerprint, real context and the budget's figures."""
    budget, data = _find(trainer, TrainingBudget), _find(trainer, FairnessRecord)
    record = data.record(pl_module, trainer.datamodule) if data and trainer.datamodule else {}
    record.update(budget.record() if budget else {})
    # What is evaluated (raw or EMA weights) and the rate's shape, where a run has them.
    record["weights"] = "raw"
    for kind in (WeightEMA, TimeCosine):
        found = _find(trainer, kind)
        record.update(found.record() if found else {})
    record["steps"] = trainer.global_step
    record["settings"] = settings_record(trainer, pl_module)
    return record


def settings_record(trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
    """What a sweep fixes beside the data and the budget: the recipe (learning rate,
    optimizer, schedule, clipping, precision, batch) and the machine and software. The
    keys of the recipe are the config names a sweep would vary them by."""
    hp, datamodule = pl_module.hparams, trainer.datamodule
    optimizer = trainer.optimizers[0] if trainer.optimizers else None
    batch_size = getattr(getattr(datamodule, "hparams", None), "batch_size", None)
    clip = trainer.gradient_clip_algorithm
    return {
        "model.lr": hp.get("lr"),
        "model.weight_decay": hp.get("weight_decay"),
        "model.scheduler": hp.get("scheduler"),
        "optimizer": type(optimizer).__name__ if optimizer else None,
        "trainer.precision": str(trainer.precision),
        "trainer.gradient_clip_val": trainer.gradient_clip_val,
        "trainer.gradient_clip_algorithm": getattr(clip, "value", clip),
        "trainer.accumulate_grad_batches": trainer.accumulate_grad_batches,
        "data.batch_size": batch_size,
        "world_size": trainer.world_size,
        **device_record(trainer.strategy.root_device),
        **software_record(),
    }


def run_config(pl_module: L.LightningModule) -> dict[str, Any]:
    """What the dashboards group and compare by."""
    figures = pl_module.net.describe(pl_module.hparams.sample_rate)
    return {
        "dimension": figures["dimension"],
        "depth": figures["depth"],
        "preset": pl_module.hparams.get("preset"),
        "loss": str(pl_module.hparams.get("loss")),
        "scheduler": pl_module.hparams.get("scheduler"),
        "ema_decay": pl_module.hparams.get("ema_decay", 0.0),
        "params": figures["parameters"],
        "receptive_field": figures["receptive_field"],
        "macs_per_second": figures["macs_per_second"],
    }


class RunRecord(Callback):
    """Writes ``wandb_run.json`` at the start and ``summary.json`` when training ended
    normally (time budget, max epochs); an interrupted run gets no summary, so the
    sweep runner resumes it."""

    def __init__(self, run_dir: Path, name: str, sweep: str, lr_source: str = "configured"):
        self.run_dir = Path(run_dir)
        self.name, self.sweep = name, sweep
        self.lr_source = lr_source

    def _wandb(self, trainer: L.Trainer) -> WandbLogger | None:
        return next((lg for lg in trainer.loggers if isinstance(lg, WandbLogger)), None)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config = {"run": self.name, "sweep": self.sweep, **run_config(pl_module)}
        logger = self._wandb(trainer)
        if logger is not None:
            run = logger.experiment
            run.config.update(config, allow_val_change=True)
            write_json(
                self.run_dir / WANDB_RUN,
                {
                    "id": run.id,
                    "project": run.project,
                    "entity": run.entity,
                    "name": self.name,
                    "offline": bool(run.offline),
                },
            )

    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        checkpoint = _find(trainer, ModelCheckpoint)
        fairness = fairness_record(trainer, pl_module)
        fairness["settings"]["lr_source"] = self.lr_source
        metrics = trainer.callback_metrics
        best = checkpoint.best_model_score
        return {
            "run": self.name,
            "sweep": self.sweep,
            **run_config(pl_module),
            "best_val_sdr": float(best) if best is not None else None,
            "best_checkpoint": checkpoint.best_model_path,
            "val_mse": float(metrics[VAL_MSE]) if VAL_MSE in metrics else None,
            "val_loss": float(metrics[VAL_LOSS]) if VAL_LOSS in metrics else None,
            "last_val_sdr": float(metrics[MONITOR]) if MONITOR in metrics else None,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "train_seconds": fairness.get("train_seconds"),
            "budget_unit": fairness.get("budget_unit"),
            "budget_seconds": fairness.get("budget_seconds"),
            "budget_steps": fairness.get("budget_steps"),
            "items_seen": fairness.get("items_seen"),
            "train_flops": fairness.get("train_flops"),
            "peak_gpu_mem_gb": torch.cuda.max_memory_allocated() / 2**30
            if torch.cuda.is_available()
            else 0.0,
            "fairness": fairness,
        }

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.interrupted or not trainer.is_global_zero:
            return
        summary = self.summary(trainer, pl_module)
        logger = self._wandb(trainer)
        if logger is not None:
            figures = {f"final/{k}": v for k, v in summary.items() if isinstance(v, int | float)}
            fairness = summary["fairness"]
            for prefix, values in (("fairness", fairness), ("settings", fairness["settings"])):
                figures.update(
                    {
                        f"{prefix}/{k}": v
                        for k, v in values.items()
                        if isinstance(v, int | float | str)
                    }
                )
            logger.experiment.summary.update(figures)
        write_json(self.run_dir / SUMMARY, summary)
