"""LightningCLI of the suite: ``ablation fit|validate|test``.

Both families are subclasses of :class:`SeparationModule` chosen with
``--model=WaveUNetModule`` (or ``--cell=1d-depth6``, see :func:`ablation.arguments.expand_cell`);
the one :class:`MUSDBDataModule` feeds both, its sources, channels, sample rate and
segment are linked into the model. Every run writes into its own folder
``<run.dir>/<run.sweep>/<run-name>/`` (see :mod:`ablation.runs`), logs to W&B
(offline without credentials) and to ``metrics.csv``, and resumes from its
``last.ckpt``. ``trainer.max_time`` is a budget of training time alone
(:class:`lightning_modules.budget.TrainingBudget`), carried in the checkpoint;
``--run.val_every_seconds`` validates on that clock. ``last.ckpt`` is rewritten at
every validation and at the end, the best checkpoint by ``val/sdr`` is kept apart,
and every run records its fairness evidence (:mod:`lightning_modules.fairness`).
Skip and resume refuse arguments that differ from the run's ``config.yaml`` in what
is trained (:mod:`lightning_modules.run_args`).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import yaml
from lightning.fabric.plugins.environments import ClusterEnvironment, SLURMEnvironment
from lightning.pytorch.callbacks import ModelCheckpoint, ProgressBar
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from ablation.arguments import DIMENSION_MODULES, expand_cell, model_arguments, model_variants
from ablation.calibration import cell_key
from ablation.checkpoint import checkpoint_step, read_checkpoint
from ablation.constants import MONITOR, MONITOR_MODE
from ablation.files import TMP_SUFFIX
from ablation.run_lock import lock_run
from ablation.runs import LAST, WANDB_RUN, is_done, last_checkpoint, read_json, run_name
from ablation.slurm import write_task_record
from ablation.tuning import edge_rates, tuned_rate
from ablation.wandb_mode import wandb_online
from datamodules import MUSDBDataModule
from datamodules.musdb import DEFAULT_TOY_ROOT
from lightning_modules.budget import (
    CHECKPOINT_FRACTIONS,
    TrainingBudget,
    budget_seconds,
    fraction_name,
    no_budget,
)
from lightning_modules.csv_log import AppendingCSVLogger, TrimMetricsOnResume
from lightning_modules.fairness import FairnessRecord
from lightning_modules.progress import ProgressLine
from lightning_modules.run_args import (
    check_same_args,
    check_same_data,
    data_record,
    resolved_root,
    write_data_record,
)
from lightning_modules.run_budget import BudgetPlan
from lightning_modules.run_record import RunRecord
from lightning_modules.separation import SeparationModule
from lightning_modules.wandb_log import SteppedWandbLogger

log = logging.getLogger(__name__)


PARTIAL_SUFFIX = ".partial"
# Commands that read a run and must not change its training record.
READ_ONLY_SUBCOMMANDS = ("validate", "test")


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete the temporary files of atomic writes that a killed run left behind."""
    leftovers = [
        *run_dir.glob(f"*{TMP_SUFFIX}"),
        *run_dir.glob(f"*{PARTIAL_SUFFIX}"),  # Lightning's requeue checkpoint, cut short
        *(run_dir / "checkpoints").glob(f"*{PARTIAL_SUFFIX}"),
    ]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


# What Lightning's Slurm auto-requeue saves in the run folder (default_root_dir).
REQUEUE_CHECKPOINTS = "hpc_ckpt_*.ckpt"


def adopt_requeue_checkpoint(run_dir: Path) -> Path | None:
    """Make the newest of Lightning's requeue checkpoints the run's ``last.ckpt``.

    Under Slurm, the warning signal makes Lightning save ``hpc_ckpt_<n>.ckpt`` and
    requeue the task. The requeued task resumes from ``last.ckpt`` like any run (with
    the budget's count, which the checkpoint holds), so resume, skip and the report see
    one checkpoint, and Lightning finds no second one to prefer. Returns the new
    ``last.ckpt``, or None when there was no requeue checkpoint."""
    saved = sorted(run_dir.glob(REQUEUE_CHECKPOINTS), key=checkpoint_step)
    if not saved:
        return None
    last = last_checkpoint(run_dir)
    target = run_dir / "checkpoints" / LAST
    # A validation after the signal may have written a newer last.ckpt: keep that one.
    if last is None or checkpoint_step(saved[-1]) >= checkpoint_step(last):
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(saved[-1], target)
    for path in run_dir.glob(REQUEUE_CHECKPOINTS):
        path.unlink(missing_ok=True)
    return target


def resume_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint this rank resumes from; rank 0 adopts a requeue checkpoint."""
    # Looked for first: rank 0 may be turning it into last.ckpt at this moment.
    requeued = any(run_dir.glob(REQUEUE_CHECKPOINTS))
    if rank_zero_only.rank == 0:
        adopt_requeue_checkpoint(run_dir)
    return run_dir / "checkpoints" / LAST if requeued else last_checkpoint(run_dir)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write each checkpoint to a temporary file, then rename it over the target, so a
    run killed while saving keeps its previous ``last.ckpt`` whole and resumable."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}{PARTIAL_SUFFIX}")
        super().save_checkpoint(checkpoint, partial, storage_options)
        os.replace(partial, path)


def net_hparams(hparams: dict) -> dict | None:
    """The module class and net arguments a checkpoint was trained with, as a
    ``--model`` config; None for a checkpoint written outside the CLI (no class path)."""
    class_path = hparams.get("_class_path")
    if class_path is None:
        return None
    module, name = class_path.rsplit(".", 1)
    cls = getattr(importlib.import_module(module), name)
    shared = inspect.signature(SeparationModule).parameters
    net = [key for key in inspect.signature(cls).parameters if key not in shared]
    return {"class_path": class_path, "init_args": {k: hparams[k] for k in net if k in hparams}}


class RunCheckpoint(ModelCheckpoint):
    """The best checkpoint by ``val/sdr``, plus ``last.ckpt`` rewritten at every
    validation and at the end of training whatever the monitor did (Lightning
    rewrites "last" only when a top-k file is saved), so a killed run loses at most
    the training since its last validation. Writing time is excluded from the budget.
    """

    def __init__(self, dirpath: Path, budget: TrainingBudget | None = None):
        super().__init__(
            dirpath=dirpath,
            filename="best-epoch{epoch}-step{step}",
            auto_insert_metric_name=False,
            monitor=MONITOR,
            mode=MONITOR_MODE,
            save_last=True,
            # a copied run folder keeps writing (and resuming from) its own last.ckpt
            enable_version_counter=False,
            # validations run on the budget's clock, mid-epoch: judge the best at each one
            save_on_train_epoch_end=False,
        )
        self.budget = budget
        self._last_saved_step: int | None = None

    def _fitting(self, trainer) -> bool:
        return (
            trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and not trainer.fast_dev_run
        )

    def _save_latest(self, trainer) -> None:
        if self._fitting(trainer) and self._last_saved_step != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_validation_end(self, trainer, pl_module) -> None:
        super().on_validation_end(trainer, pl_module)
        self._save_latest(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        self._save_latest(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # The budget-fraction checkpoints: the run as it stood at 1/8, 1/4 ... of its budget.
        # Saved directly: ModelCheckpoint's own save would mark the step as saved and
        # skip the best and last checkpoints of a validation at the same step.
        due = self.budget.due_fractions if self.budget and self._fitting(trainer) else ()
        for fraction in due:
            path = Path(self.dirpath) / f"{fraction_name(fraction)}.ckpt"
            self.budget.timed("checkpoint", trainer.save_checkpoint)(str(path))

    def _save_last_checkpoint(self, trainer, monitor_candidates) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_saved_step = trainer.global_step

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        save = super()._save_checkpoint
        if self.budget is not None:
            save = self.budget.timed("checkpoint", save)
        save(trainer, filepath)


class AblationCLI(LightningCLI):
    """LightningCLI with run folders, W&B + CSV logging, checkpoints and resume."""

    def __init__(self, args: Sequence[str], run: bool = True):
        self.argv = list(args)
        self.run_lock = None
        try:
            super().__init__(
                SeparationModule,
                MUSDBDataModule,
                subclass_mode_model=True,
                args=self.argv,
                run=run,
                save_config_kwargs={"overwrite": True},
            )
        finally:  # the run folder's lock (instantiate_trainer) ends with the command
            if self.run_lock is not None:
                self.run_lock.release()

    def parse_arguments(self, parser, args) -> None:
        # `args` is the command with --cell expanded while sys.argv keeps the user's own
        # command for DDP's child ranks (see run_lightning_cli); Lightning warns when it
        # sees both, which here is intended.
        self.config = parser.parse_args(args)
        subcommand = self.config.get("subcommand")
        cell = (self.config[subcommand] if subcommand else self.config).get("cell")
        if cell is not None:  # only a config file can bring one here
            raise ValueError(
                f"a config file sets cell: {cell}, but --cell is read on the "
                "command line only: move it there (--cell=...) or set model and model.depth"
            )

    def add_arguments_to_parser(self, parser) -> None:
        # Documented here, expanded before parsing (ablation.arguments.expand_cell), so it
        # never reaches a run's config (SUPPRESS keeps it out when not given).
        parser.add_argument(
            "--cell",
            type=str,
            default=argparse.SUPPRESS,
            help="a grid cell: <1d|2d>-depth<N>[-filters<F>], e.g. 2d-depth4; sets --model "
            "(the dimension's module), --model.depth and --model.filters",
        )
        parser.add_argument("--run.dir", default="runs", help="parent of all run folders")
        parser.add_argument("--run.sweep", default="adhoc", help="sweep or experiment name")
        parser.add_argument("--run.name", default=None, help="default: e.g. 1d-depth6-seed0")
        parser.add_argument(
            "--run.project", default=os.environ.get("WANDB_PROJECT", "unet-ablation")
        )
        parser.add_argument(
            "--run.val_every_seconds",
            type=float | None,
            default=None,
            help="validate every this many seconds of counted training time "
            "(default: Lightning's schedule, once per epoch)",
        )
        parser.add_argument(
            "--run.budget_unit",
            type=Literal["time", "calibrated", "steps", "flops"],
            default="time",
            help="what the budget counts: counted training seconds (trainer.max_time), that "
            "time turned into steps by a calibration table, steps (run.budget_steps) or "
            "training FLOPs (run.budget_flops)",
        )
        parser.add_argument("--run.budget_steps", type=int | None, default=None,
                            help="the step budget of budget_unit=steps")  # fmt: skip
        parser.add_argument("--run.budget_flops", type=float | None, default=None,
                            help="the training-FLOPs budget of budget_unit=flops")  # fmt: skip
        parser.add_argument(
            "--run.calibration",
            type=str | None,
            default=None,
            help="budget_unit=calibrated: the calibration table (default: "
            "<run.dir>/<run.sweep>/calibration.json); cells it lacks are measured into it",
        )
        parser.add_argument(
            "--run.val_every_steps",
            type=int | None,
            default=None,
            help="step units: validate every this many steps (default: the share of the "
            "budget run.val_every_seconds is of trainer.max_time)",
        )
        parser.add_argument(
            "--run.tuning",
            type=str | None,
            default=None,
            help="the runs of sweeps/tune_lr.yaml (e.g. runs/tune_lr): train at the learning "
            "rate they chose for this run's dimension instead of model.lr",
        )
        parser.add_argument(
            "--run.checkpoint_fractions",
            type=list[float],
            default=list(CHECKPOINT_FRACTIONS),
            help="keep a checkpoint (checkpoints/budget-<f>.ckpt) at these fractions of the budget",
        )
        parser.link_arguments("data.sources", "model.init_args.sources", apply_on="instantiate")
        for name in ("channels", "sample_rate", "segment"):
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}")

    def before_instantiate_classes(self) -> None:
        # One data stream per seed: seed k of every cell trains on data seed k (a seeds
        # axis varies seed_everything alone), unless --data.seed says otherwise.
        config = self.run_config
        if config.data.seed is None:
            seed = config.seed_everything
            config.data.seed = 0 if isinstance(seed, bool) or seed is None else int(seed)
        # config.yaml records the root this run reads, also when $MUSDB_PATH gave it
        config.data.root = resolved_root(config.data.root, DEFAULT_TOY_ROOT)
        self.lr_source = self._learning_rate(config)

    def _learning_rate(self, config) -> str:
        """Each family at its own tuned rate when the run points at tuning runs
        (``--run.tuning``); says in one line where the rate came from."""
        module = "." + config.model.class_path.rsplit(".", 1)[-1]
        dimension = next((d for d, p in DIMENSION_MODULES.items() if p.endswith(module)), None)
        tuning = config.run.tuning
        if tuning is None or dimension is None:
            source = "configured"
            detail = "no tuning runs given (--run.tuning=runs/tune_lr picks each family's)"
        else:
            config.model.init_args.lr = tuned_rate(tuning, dimension)
            source = f"tuned: {tuning}"
            detail = f"the {dimension} rate the tuning runs in {tuning} chose"
            if dimension in edge_rates(tuning):
                detail += (
                    ", the edge of the rates they tried: the best may lie beyond it; "
                    "widen model.lr's values in the tuning sweep"
                )
        if self.subcommand == "fit" and rank_zero_only.rank == 0:
            print(f"learning rate {config.model.init_args.lr:g}: {detail}", flush=True)
        return source

    def _parse_ckpt_path(self) -> None:
        """``--ckpt_path``: the checkpoint's module class and net arguments override the
        config (its weights fit no other net); data, loss and optimization stay as
        configured, so a resume can lower the learning rate. Lightning's own version
        applies every saved hyper-parameter, ``net_config`` too, which no module takes."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        checkpoint = read_checkpoint(ckpt_path)
        net = net_hparams(checkpoint.get("hyper_parameters", {}))
        if net is not None:
            self.config = self.parser.parse_object({subcommand: {"model": net}}, self.config)

    # ---- the run folder -----------------------------------------------------------------
    @property
    def run_config(self):
        """The parsed config of this subcommand (the whole config when not run)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def _cell(self) -> tuple[str, int]:
        return self.model.net.dimension, int(self.model.net.config["depth"])

    def _run_dir(self) -> tuple[Path, str, str]:
        config = self.run_config
        dimension, depth = self._cell()
        name = config.run.name or run_name(
            dimension, depth, config.seed_everything, model_variants(model_arguments(self.argv))
        )
        return Path(config.run.dir) / config.run.sweep / name, name, config.run.sweep

    def _wandb_logger(self, run_dir: Path, name: str, sweep: str) -> SteppedWandbLogger:
        dimension, depth = self._cell()
        stored = read_json(run_dir / WANDB_RUN)
        # Under `wandb agent` the agent chose the run id; otherwise reuse ours on resume.
        run_id = None if "WANDB_SWEEP_ID" in os.environ else stored.get("id")
        last = last_checkpoint(run_dir)
        rewind = run_id if run_id and last else None
        return SteppedWandbLogger(
            name=name,
            save_dir=str(run_dir),
            project=self.run_config.run.project,
            group=f"{dimension}-depth{depth}",
            tags=[sweep, dimension, f"depth{depth}"],
            id=run_id,
            resume="allow" if run_id else None,
            offline=not wandb_online(),
            rewind_to=rewind,
        )

    def _resolve_context(self) -> None:
        """Give the data the context the net needs when the config leaves it open, say
        so when a configured context is shorter than that, and let the loader read no
        more of it than the net reads (a shallow cell need not move 7 s of context)."""
        net, data = self.model.net, self.datamodule
        need = max(net.context_samples(data.segment_samples), *net.reach_samples())
        rate = data.hparams.sample_rate
        if data.hparams.context is None:
            data.set_context_samples(need)
        elif data.context_samples < need:
            log.warning(
                "data.context is %.3f s but this %s-depth%d net reads %.3f s on each side: "
                "outputs near the loss region's edges see zeros (see real_context_fraction); "
                "raise --data.context to at least %.3f for a fair comparison.",
                data.context_samples / rate,
                net.dimension,
                net.depth,
                need / rate,
                need / rate,
            )
        data.read_at_most(need)

    def instantiate_trainer(self, **kwargs):
        self.run_dir, name, sweep = self._run_dir()
        if self.subcommand in READ_ONLY_SUBCOMMANDS:
            return super().instantiate_trainer(**self._read_only_trainer_args(kwargs))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # one writer per run: held until the command ends (see __init__) or the process dies
        self.run_lock = lock_run(self.run_dir) if rank_zero_only.rank == 0 else None
        remove_leftovers(self.run_dir)
        # Before the W&B logger, which rewinds its history to the resume point.
        self.resume_from = resume_checkpoint(self.run_dir)
        self._resolve_context()
        trainer_config = self._get(self.config_init, "trainer", default={})
        configured = trainer_config.get("callbacks") or []
        plugins = trainer_config.get("plugins") or []
        plugins = plugins if isinstance(plugins, list) else [plugins]
        if SLURMEnvironment.detect() and not any(
            isinstance(p, ClusterEnvironment) for p in plugins
        ):
            # Slurm's warning signal (ablation.slurm's scripts ask for SIGUSR1) makes
            # Lightning save a checkpoint and requeue the task; see fit().
            plugins.append(SLURMEnvironment(auto_requeue=True, requeue_signal=signal.SIGUSR1))
        # The budget replaces Lightning's Timer, which would count validation and saving.
        run = self.run_config.run
        self.budget = TrainingBudget(
            budget_seconds(trainer_config.get("max_time")),
            run.val_every_seconds,
            unit=run.budget_unit,
            val_every_steps=run.val_every_steps,
            fractions=run.checkpoint_fractions,
        )
        unbounded = self.subcommand == "fit" and no_budget(self.budget, trainer_config)
        if unbounded and rank_zero_only.rank == 0:
            log.warning(unbounded)
        if not sys.stdout.isatty() and not any(isinstance(c, ProgressBar) for c in configured):
            # In a log Lightning's bar is one endless line of redraws: ProgressLine's lines say it
            kwargs["enable_progress_bar"] = False
        kwargs.update(
            max_time=None,
            plugins=[*plugins, AtomicCheckpointIO()],
            default_root_dir=str(self.run_dir),
            logger=[
                self._wandb_logger(self.run_dir, name, sweep),
                AppendingCSVLogger(str(self.run_dir), name="", version=""),
            ],
            callbacks=[
                *configured,
                self.budget,
                ProgressLine(name, self.budget),  # after the budget: it reads its count
                FairnessRecord(),
                RunCheckpoint(self.run_dir / "checkpoints", self.budget),
                RunRecord(self.run_dir, name, sweep, self.lr_source),
                TrimMetricsOnResume(),
            ],
        )
        trainer = super().instantiate_trainer(**kwargs)
        self.budget_plan = BudgetPlan(self.model, self.datamodule, trainer, self.budget, run)
        if self.subcommand == "fit":  # validate and test train nothing: no budget to resolve
            self.budget_plan.measure_flops()
            key = cell_key(*self._cell(), model_arguments(self.argv))
            self.budget_plan.resolve(key, self.run_dir.parent)
        return trainer

    def _read_only_trainer_args(self, kwargs: dict) -> dict:
        """``validate`` and ``test`` leave the run's training record alone: their config,
        ``metrics.csv`` and Lightning files go to ``<run>/<subcommand>/``, no W&B run is
        resumed, no checkpoint is written and nothing of the run folder is renamed."""
        out = self.run_dir / self.subcommand
        self._resolve_context()
        logger = CSVLogger(str(out), name="", version="")
        return {**kwargs, "default_root_dir": str(out), "logger": [logger]}

    # ---- fit with skip and resume ---------------------------------------------------
    def _current_args(self) -> dict:
        """This run's arguments as ``config.yaml`` will hold them."""
        return yaml.safe_load(self._parser(self.subcommand).dump(self.run_config, skip_none=False))

    def fit(self, model, datamodule=None, ckpt_path=None, **kwargs) -> None:
        if rank_zero_only.rank == 0:
            write_task_record(self.run_dir)  # a requeued online Slurm task resumes this run
        # Checked before trainer.fit, which rewrites config.yaml and hparams.yaml.
        if is_done(self.run_dir):
            check_same_args(self.run_dir, self._current_args(), "be skipped as finished")
            check_same_data(self.run_dir, data_record(self.datamodule), "be skipped as finished")
            print(f"{self.run_dir}: finished earlier (summary.json present), skipping")
            return
        last = self.resume_from
        if last is not None:
            read_checkpoint(last)  # a damaged file is named in one line, before Lightning reads it
            check_same_args(self.run_dir, self._current_args(), "resume")
            check_same_data(self.run_dir, data_record(self.datamodule), "resume")
        elif rank_zero_only.rank == 0:
            write_data_record(self.run_dir, data_record(self.datamodule))
        self.budget_plan.calibrate_if_needed()
        if ckpt_path is None and last is not None:
            print(f"{self.run_dir}: resuming from {last}")
            ckpt_path = str(last)
        self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, **kwargs)


def run_lightning_cli(argv: Sequence[str]) -> None:
    """``ablation fit|validate|test ...``

    Under DDP, Lightning starts the other ranks of a node by running
    ``sys.executable`` on ``__main__`` with ``sys.argv[1:]`` again, so ``sys.argv`` must
    hold this very command (also when :func:`ablation.cli.main` was given ``argv``),
    or the child ranks start without arguments and the run dies.
    """
    sys.argv = [sys.argv[0], *argv]
    AblationCLI(expand_cell(argv))
