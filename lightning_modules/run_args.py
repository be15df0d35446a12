"""A run folder keeps the arguments it was started with: ``config.yaml``, written by
LightningCLI before training. Skipping a finished run or resuming a killed one with
other arguments would report (or continue) a run that nobody asked for, so both
compare the new arguments with the recorded ones first.

The rule: every argument counts, except those that say *where* things are or *how
they are shown*, and those a resume is meant to change:

- places: ``run.dir``, ``run.sweep``, ``run.name``, ``run.calibration``, ``run.tuning``
  (the rate it chose is ``model.lr``), ``data.cache_dir``,
  ``trainer.default_root_dir``, ``ckpt_path``; ``data.root`` counts by the folder it
  resolves to, so another spelling of the same folder is the same data;
- hardware and loading: ``trainer.accelerator|strategy|devices|num_nodes``,
  ``data.num_workers|pin_memory|resident`` (the data stream depends on none);
- logging and display: ``run.project``, ``trainer.logger|log_every_n_steps|profiler|
  enable_progress_bar|enable_model_summary|enable_checkpointing|enable_autolog_hparams|
  model_registry``, ``data.progress``, ``model.example_every_n_epochs|examples``;
- what a resume may change: ``trainer.max_steps|max_epochs`` (step caps, to extend a
  run) and ``model.lr`` ("lower the learning rate, then resume" after a non-finite loss).

Everything else (the model and its net, the data and its augmentation, the seed,
``trainer.max_time``, precision, gradient clipping, validation schedule ...) counts.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import yaml

from ablation.errors import AblationError

CONFIG = "config.yaml"
IGNORED = frozenset(
    {
        "config", "ckpt_path", "weights_only",
        "run.dir", "run.sweep", "run.name", "run.project", "run.calibration", "run.tuning",
        "data.cache_dir", "data.num_workers", "data.pin_memory", "data.resident",
        "data.progress",
        "model.example_every_n_epochs", "model.examples", "model.lr",
        *(f"trainer.{key}" for key in (
            "default_root_dir", "accelerator", "strategy", "devices", "num_nodes", "logger",
            "log_every_n_steps", "profiler", "enable_progress_bar", "enable_model_summary",
            "enable_checkpointing", "enable_autolog_hparams", "model_registry",
            "max_steps", "max_epochs",
        )),
    }
)  # fmt: skip
ROOT = "data.root"


class RunArgumentsError(AblationError):
    """A finished or resumable run folder was asked to run with other arguments."""


def _flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in config.items():
        # `model.init_args.depth` is what the user typed as `--model.depth`
        name = prefix[:-1] if key == "init_args" else f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def training_args(config: dict) -> dict[str, Any]:
    """The arguments of ``config`` (as in ``config.yaml``) that change what is trained."""
    args = {k: v for k, v in _flatten(config).items() if k not in IGNORED}
    if args.get(ROOT) is not None:
        args[ROOT] = os.path.realpath(args[ROOT])
    return args


def changed_args(recorded: dict, current: dict) -> list[str]:
    """``"name old -> new"`` for every counted argument that differs."""
    old, new = training_args(recorded), training_args(current)
    return [
        f"{key} {_show(old.get(key))} -> {_show(new.get(key))}"
        for key in sorted(old.keys() | new.keys())
        if old.get(key) != new.get(key)
    ]


def _show(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def read_recorded(run_dir: Path) -> dict | None:
    path = Path(run_dir) / CONFIG
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def check_same_args(run_dir: Path, current: dict, doing: str) -> None:
    """Refuse to ``doing`` (skip, resume) the run in ``run_dir`` with other arguments."""
    recorded = read_recorded(run_dir)
    changes = [] if recorded is None else changed_args(recorded, current)
    if changes:
        raise RunArgumentsError(
            f"{run_dir} was started with other arguments ({'; '.join(changes)}), so it cannot "
            f"{doing} with these: give the recorded values, or start a new run with another "
            "--run.name or --run.dir"
        )
