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

The data counts too, beyond its arguments: ``config.yaml`` holds the root the run
resolved (``--data.root``, else ``$MUSDB_PATH``, else the toy dataset), and ``data.json``
the training tracks it found there, by name and decoded length (:func:`data_record`).
Skip and resume compare both (:func:`check_same_data`), so a run never goes on, or
counts as done, on another dataset.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import yaml

from ablation.errors import AblationError
from ablation.files import write_text
from ablation.runs import CONFIG, DATA

log = logging.getLogger(__name__)

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
    if old.get(ROOT) is None:  # recorded before runs resolved their root: data.json decides
        new.pop(ROOT, None)
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


def resolved_root(root: str | None, default: str) -> str:
    """The absolute data root a run reads: ``root``, else ``$MUSDB_PATH``, else ``default``
    (what :class:`datamodules.MUSDBDataModule` resolves), so ``config.yaml`` records it."""
    return os.path.abspath(root or os.environ.get("MUSDB_PATH") or default)


def data_record(datamodule) -> dict[str, Any]:
    """The run's data: its root and every training and validation track, by name and
    decoded length in samples (the tracks a run learns from and is judged on), with a
    SHA-256 of them. ``datamodule`` is a :class:`datamodules.MUSDBDataModule` (its cache
    gives the lengths, decoding each track once)."""
    tracks = {}
    for split in ("train", "valid"):
        if datamodule.splits()[split]:
            lengths = datamodule.arrays(split).lengths
            for ref, length in zip(datamodule.splits()[split], lengths, strict=True):
                tracks[f"{ref.subset}/{ref.name}"] = int(length)
    digest = hashlib.sha256(json.dumps(sorted(tracks.items())).encode()).hexdigest()
    return {"root": os.path.realpath(datamodule.root), "fingerprint": digest, "tracks": tracks}


def write_data_record(run_dir: Path, record: dict[str, Any]) -> None:
    write_text(Path(run_dir) / DATA, json.dumps(record, indent=2))


def changed_data(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs between two data records, in words (at most three tracks named)."""
    changes = []
    if recorded.get("root") != current.get("root"):
        changes.append(f"root {recorded.get('root')} -> {current.get('root')}")
    old, new = recorded.get("tracks", {}), current.get("tracks", {})
    differ = [
        f"{name} {old.get(name, 'absent')} -> {new.get(name, 'absent')} samples"
        for name in sorted(old.keys() | new.keys())
        if old.get(name) != new.get(name)
    ]
    if differ:
        more = f" and {len(differ) - 3} more" if len(differ) > 3 else ""
        changes.append(f"{len(differ)} track(s) differ: {', '.join(differ[:3])}{more}")
    return changes


def check_same_data(run_dir: Path, current: dict[str, Any], doing: str) -> None:
    """Refuse to ``doing`` (skip, resume) the run in ``run_dir`` on other data than it
    recorded in ``data.json``; a run recorded before that file existed is not compared."""
    path = Path(run_dir) / DATA
    if not path.is_file():
        log.warning("%s records no data (%s): its data is not compared", run_dir, DATA)
        return
    changes = changed_data(json.loads(path.read_text()), current)
    if changes:
        raise RunArgumentsError(
            f"{run_dir} was trained on other data ({'; '.join(changes)}), so it cannot {doing} "
            "on this data: give the recorded root (--data.root or MUSDB_PATH) and tracks, or "
            "start a new run with another --run.name or --run.dir"
        )
