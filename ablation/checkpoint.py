"""The checkpoint contract: what a checkpoint of the suite holds, written and read here.

A checkpoint describes itself: loading it needs no config file (DESIGN.md). The
LightningModule that trains a net stores, in Lightning's ``hyper_parameters``:

- ``net_config``: the complete :func:`ablation.nets.build` arguments of the net;
- ``sources``: the names of the estimated sources, in the net's output order;
- ``sample_rate``: the rate the net was trained at, in Hz;
- ``segment``: the loss-region length it was trained on, in seconds (the default
  separation segment);

and the net's weights in ``state_dict`` under ``net.``. :func:`load_net` rebuilds
the net from that alone, without Lightning, and the net carries what it was
trained for (``source_names``, ``sample_rate``, ``segment_seconds``, as Demucs
models carry theirs), so separation, evaluation and the report read one object.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ablation.errors import AblationError
from ablation.nets import SeparationNet, build

# The LightningModule's attribute holding the net: its weights' prefix in ``state_dict``.
NET_ATTRIBUTE = "net"
REQUIRED = ("net_config", "sources", "sample_rate")
# How torch.save's files begin: a zip archive (PyTorch 1.6 on) or a pickle (before).
TORCH_MAGIC = (b"PK", b"\x80")
TORCH_HEAD = 24  # bytes of another file shown in its refusal
# Only for a checkpoint that does not record its training segment.
DEFAULT_SEGMENT_SECONDS = 3.0


class CheckpointError(AblationError):
    """A checkpoint that is missing, unreadable or not one of the suite's."""


def contract(net_config: dict, sources: Sequence[str], sample_rate: int, segment: float) -> dict:
    """The hyper-parameters a module stores so that :func:`load_net` needs nothing else."""
    return {
        "net_config": dict(net_config),
        # a plain list keeps hparams.yaml readable by any YAML parser
        "sources": list(sources),
        "sample_rate": int(sample_rate),
        "segment": float(segment),
    }


def read_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict, checked against the contract (weights memory-mapped).

    Raises:
        CheckpointError: the file is missing, unreadable or not one of the suite's.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_checkpoint(path)
    try:
        # Our own checkpoints hold plain Python containers, but older Lightning
        # versions pickled other objects, so a full (trusted) unpickling is needed.
        checkpoint = torch.load(path, map_location=device, weights_only=False, mmap=True)
    except Exception:
        try:  # the legacy (non-zip) format cannot be memory-mapped: read it whole
            checkpoint = torch.load(path, map_location=device, weights_only=False)
        except Exception as error:
            raise damaged_checkpoint(path, error) from None
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, dict) else None
    missing = [key for key in REQUIRED if key not in (hparams or {})]
    if missing or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(
            f"{path} is not a checkpoint of this suite: expected 'hyper_parameters' with "
            f"{list(REQUIRED)} and a 'state_dict' (as WaveUNetModule and SpecUNetModule "
            f"write them), but it lacks {missing or ['state_dict']}. Pass a checkpoint "
            f"written by `ablation fit`."
        )
    return checkpoint


def missing_checkpoint(path: Path) -> CheckpointError:
    """The one-line refusal of a path that is no file: a run folder names its checkpoints."""
    if not path.is_dir():
        return CheckpointError(
            f"checkpoint {path} not found: expected a .ckpt file written by `ablation fit` "
            f"(e.g. runs/<sweep>/<run>/checkpoints/last.ckpt)."
        )
    folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
    found = sorted(folder.glob("best-*.ckpt")) + sorted(folder.glob("last.ckpt"))
    shown = " or ".join(f"--ckpt={p}" for p in found) or f"--ckpt={folder / 'last.ckpt'}"
    return CheckpointError(
        f"{path} is a folder, not a checkpoint: expected a .ckpt file written by `ablation "
        f"fit`; pass {shown} (best-*: the best validation; last: the end of training)."
    )


def damaged_checkpoint(path: Path, error: BaseException) -> CheckpointError:
    """The one-line refusal of a file ``torch.load`` cannot read."""
    size = path.stat().st_size if path.exists() else 0
    with open(path, "rb") as file:
        head = file.read(TORCH_HEAD)
    if head and not head.startswith(TORCH_MAGIC):  # another kind of file, not a cut-short one
        begins = head.decode("utf-8", "replace").split("\n")[0]
        return CheckpointError(
            f"{path} is not a readable PyTorch checkpoint but another kind of file (it begins "
            f"{begins!r}; torch.save writes a zip archive or a pickle): expected a .ckpt file "
            f"written by `ablation fit`; pass one, e.g. runs/<sweep>/<run>/checkpoints/last.ckpt."
        )
    said = str(error).strip().splitlines()[0][:120] if str(error).strip() else ""
    cause = f"{type(error).__name__}{f': {said}' if said else ''}"
    fix = (
        "delete it (and summary.json, if any) to train the run again from its start, or "
        "restore it from a copy"
        if path.name == "last.ckpt"
        else "pass a .ckpt file written by `ablation fit` (a copy cut short is unreadable)"
    )
    return CheckpointError(
        f"checkpoint {path} ({size} bytes) is damaged, not a readable PyTorch checkpoint "
        f"({cause}): expected a whole .ckpt file written by `ablation fit`; {fix}."
    )


def checkpoint_step(path: str | Path) -> int:
    """The global step a checkpoint was saved at."""
    return int(read_checkpoint(path).get("global_step", 0))


def build_net(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> SeparationNet:
    """The net a checkpoint describes, untrained, carrying what it was trained for."""
    hparams = checkpoint["hyper_parameters"]
    try:
        net = build(dict(hparams["net_config"]))
    except (ValueError, KeyError, TypeError) as error:
        raise CheckpointError(
            f"{path}: its net_config {hparams['net_config']} does not build a net ({error}). "
            f"Was it written by another version of the suite?"
        ) from error
    net.set_training_audio(
        sources=hparams["sources"],
        sample_rate=int(hparams["sample_rate"]),
        segment_seconds=float(hparams.get("segment") or DEFAULT_SEGMENT_SECONDS),
    )
    return net


def load_net(path: str | Path, device: str | torch.device = "cpu") -> SeparationNet:
    """The trained net of a checkpoint, in eval mode on ``device``, without Lightning.

    Raises:
        CheckpointError: missing or unreadable file, not one of the suite's checkpoints,
            or weights that do not fit the net its config builds.
    """
    checkpoint = read_checkpoint(path, device)
    net = build_net(checkpoint, path)
    prefix = f"{NET_ATTRIBUTE}."
    state = {
        key.removeprefix(prefix): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(
            f"{path}: its net_config {checkpoint['hyper_parameters']['net_config']} does not "
            f"rebuild the net its weights belong to ({error}). Was it written by another "
            f"version of the suite?"
        ) from error
    return net.to(device).eval()
