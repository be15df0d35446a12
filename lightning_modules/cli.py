"""LightningCLI of the suite: ``ablation fit|validate|test``.

Both families are subclasses of :class:`SeparationModule` chosen with
``--model=WaveUNetModule`` (or ``--cell=1d-depth6``, see :func:`ablation.runs.expand_cell`);
the one :class:`MUSDBDataModule` feeds both, its sources, channels, sample rate and
segment are linked into the model. Every run writes into its own folder
``<run.dir>/<run.sweep>/<run-name>/`` (see :mod:`ablation.runs`), logs to W&B
(offline without credentials) and to ``metrics.csv``, and resumes from its
``last.ckpt``; the time already trained, kept by Lightning's Timer in the
checkpoint, counts against ``trainer.max_time``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ablation.constants import MONITOR, MONITOR_MODE
from ablation.runs import (
    WANDB_RUN,
    expand_cell,
    is_done,
    last_checkpoint,
    model_variants,
    read_json,
    run_name,
)
from ablation.wandb_mode import wandb_online
from datamodules import MUSDBDataModule
from lightning_modules.run_record import RunRecord
from lightning_modules.separation import SeparationModule

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file, then rename it over the target, so a
    run killed while saving keeps its previous ``last.ckpt`` whole and resumable."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.partial")
        super().save_checkpoint(checkpoint, partial, storage_options)
        os.replace(partial, path)


class AblationCLI(LightningCLI):
    """LightningCLI with run folders, W&B + CSV logging, checkpoints and resume."""

    def __init__(self, args: Sequence[str], run: bool = True):
        self.argv = list(args)
        super().__init__(
            SeparationModule,
            MUSDBDataModule,
            subclass_mode_model=True,
            args=self.argv,
            run=run,
            save_config_kwargs={"overwrite": True},
        )

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument("--run.dir", default="runs", help="parent of all run folders")
        parser.add_argument("--run.sweep", default="adhoc", help="sweep or experiment name")
        parser.add_argument("--run.name", default=None, help="default: e.g. 1d-depth6-seed0")
        parser.add_argument(
            "--run.project", default=os.environ.get("WANDB_PROJECT", "unet-ablation")
        )
        parser.link_arguments("data.sources", "model.init_args.sources", apply_on="instantiate")
        for name in ("channels", "sample_rate", "segment"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}")

    # ---- the run folder -----------------------------------------------------------------
    @property
    def run_config(self):
        """The parsed config of this subcommand (the whole config when not run)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def _cell(self) -> tuple[str, int]:
        return self.model.net.family, int(self.model.net.config["depth"])

    def _run_dir(self) -> tuple[Path, str, str]:
        config = self.run_config
        dimension, depth = self._cell()
        name = config.run.name or run_name(
            dimension, depth, config.seed_everything, model_variants(self.argv)
        )
        return Path(config.run.dir) / config.run.sweep / name, name, config.run.sweep

    def _wandb_logger(self, run_dir: Path, name: str, sweep: str) -> WandbLogger:
        dimension, depth = self._cell()
        stored = read_json(run_dir / WANDB_RUN)
        # Under `wandb agent` the agent chose the run id; otherwise reuse ours on resume.
        run_id = None if "WANDB_SWEEP_ID" in os.environ else stored.get("id")
        return WandbLogger(
            name=name,
            save_dir=str(run_dir),
            project=self.run_config.run.project,
            group=f"{dimension}-depth{depth}",
            tags=[sweep, dimension, f"depth{depth}"],
            id=run_id,
            resume="allow" if run_id else None,
            offline=not wandb_online(),
        )

    def instantiate_trainer(self, **kwargs):
        self.run_dir, name, sweep = self._run_dir()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        trainer_config = self._get(self.config_init, "trainer", default={})
        configured = trainer_config.get("callbacks") or []
        plugins = trainer_config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        checkpoint = ModelCheckpoint(
            dirpath=self.run_dir / "checkpoints",
            filename="best-epoch{epoch}-step{step}",
            auto_insert_metric_name=False,
            monitor=MONITOR,
            mode=MONITOR_MODE,
            save_last=True,
        )
        kwargs.update(
            plugins=[*plugins, AtomicCheckpointIO()],
            default_root_dir=str(self.run_dir),
            logger=[
                self._wandb_logger(self.run_dir, name, sweep),
                CSVLogger(str(self.run_dir), name="", version=""),
            ],
            callbacks=[*configured, checkpoint, RunRecord(self.run_dir, name, sweep)],
        )
        return super().instantiate_trainer(**kwargs)

    # ---- fit with skip and resume ---------------------------------------------------
    def fit(self, model, datamodule=None, ckpt_path=None, **kwargs) -> None:
        if is_done(self.run_dir):
            print(f"{self.run_dir}: finished earlier (summary.json present), skipping")
            return
        last = last_checkpoint(self.run_dir)
        if ckpt_path is None and last is not None:
            print(f"{self.run_dir}: resuming from {last}")
            ckpt_path = str(last)
        self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)


def run_lightning_cli(argv: Sequence[str]) -> None:
    """``ablation fit|validate|test ...``"""
    sys.argv = sys.argv[:1]  # the arguments travel in `args`; LightningCLI warns on both
    AblationCLI(expand_cell(argv))
