"""Checking an evaluation request and claiming its output folder: the checkpoint or
baseline, the targets, the data, and ``evaluation.json``, which says what a folder holds
so that a later run resumes only the same evaluation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from ablation.constants import EVALUATION_MANIFEST, SAMPLE_RATE, target_names
from ablation.evaluation.baselines import BASELINES
from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import (
    BACKENDS,
    HOP_SECONDS,
    MUSDB_CHANNELS,
    WIN_SECONDS,
    EvaluationError,
    scored_targets,
    scoring_groups,
)
from ablation.evaluation.separation import load_net
from ablation.evaluation.tracks import dataset_rate
from ablation.files import write_text
from ablation.tracks import dataset_stems, detect_is_wav, list_tracks, require_ffmpeg

# Manifest fields that make two evaluations different; tracks may grow between runs.
_IDENTITY = (
    "checkpoint_sha1", "baseline", "root", "subset", "targets", "metrics", "sample_rate", "shifts"
)  # fmt: skip
# What a manifest written before a field existed meant by its absence.
_IDENTITY_DEFAULTS = {"shifts": 0}


def _file_digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha1").hexdigest()


def _checkpoint_targets(ckpt: Path, device: str) -> tuple[tuple[str, ...], int, int | None]:
    from ablation.checkpoint import CheckpointError

    try:
        net = load_net(str(ckpt), device)
    except CheckpointError as error:
        raise EvaluationError(f"{error} (or pass BASELINE={'|'.join(BASELINES)})") from error
    if net.channels != MUSDB_CHANNELS:
        raise EvaluationError(
            f"{ckpt} separates {net.channels}-channel audio, MUSDB18 is stereo: BSS Eval "
            f"compares stereo images, so evaluate a stereo ({MUSDB_CHANNELS}-channel) model."
        )
    return net.source_names, net.sample_rate, round(net.segment_seconds * net.sample_rate)


def default_out(
    ckpt: str | None,
    baseline: str | None,
    subset: str,
    targets: Sequence[str] | None = None,
    shifts: int = 0,
) -> Path:
    """Beside the checkpoint (``<stem>-eval-<subset>``, ``-shifts<n>`` appended with the
    shift trick, ``<baseline>-eval-<subset>`` for a baseline on a checkpoint's targets), or
    ``results/baselines/<baseline>-<subset>`` (``<baseline>-<targets>-<subset>`` for
    chosen targets)."""
    if ckpt is not None:
        path = Path(ckpt)
        shifted = f"-shifts{shifts}" if shifts and baseline is None else ""
        return path.with_name(f"{baseline or path.stem}-eval-{subset}{shifted}")
    chosen = "".join(f"-{t}" for t in targets or ())
    return Path("results") / "baselines" / f"{baseline}{chosen}-{subset}"


def _baseline_targets(
    targets: str | Sequence[str] | None, baseline: str | None, stems: tuple[str, ...]
) -> tuple[str, ...] | None:
    if targets is None:
        return None
    if baseline is None:
        raise EvaluationError(
            "targets choose what a baseline estimates; a checkpoint is evaluated on its own "
            "sources. Drop the targets, or pass a baseline."
        )
    try:
        return target_names(targets, stems)
    except ValueError as err:
        raise EvaluationError(str(err)) from err


def _manifest(plan: Plan, ckpt_digest: str | None, tracks: Sequence[str]) -> dict:
    return {
        "checkpoint": plan.ckpt,
        "checkpoint_sha1": ckpt_digest,
        "baseline": plan.baseline,
        "root": plan.root,
        "is_wav": plan.is_wav,
        "subset": plan.subset,
        "stems": list(plan.stems),
        "targets": list(scored_targets(plan.groups)),
        "scored_together": [asdict(g) for g in plan.groups],
        "metrics": plan.metrics,
        "shifts": plan.shifts,
        "sample_rate": plan.sample_rate,
        "win_seconds": WIN_SECONDS,
        "hop_seconds": HOP_SECONDS,
        "tracks": list(tracks),
    }


def _claim_out(out: Path, manifest: dict) -> None:
    path = out / EVALUATION_MANIFEST
    if path.exists():
        old = json.loads(path.read_text())
        differs = [k for k in _IDENTITY if old.get(k, _IDENTITY_DEFAULTS.get(k)) != manifest[k]]
        if differs:
            found = ", ".join(f"{k}={old.get(k)!r}" for k in differs)
            raise EvaluationError(
                f"{out} holds the results of another evaluation ({found}; now "
                f"{', '.join(f'{k}={manifest[k]!r}' for k in differs)}): nothing was changed. "
                f"Pass another OUT, or delete {out} to evaluate again."
            )
    write_text(path, json.dumps(manifest, indent=2))


def default_device(device: str | None) -> str:
    """``device`` when given, else ``cuda`` when available, else ``cpu``."""
    if device is not None:
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def prepare(
    ckpt: str | None,
    root: str,
    subset: str,
    out: str | None,
    baseline: str | None,
    metrics: str,
    device: str,
    targets: str | Sequence[str] | None = None,
    shifts: int = 0,
) -> tuple[Plan, list[str]]:
    """Check the request and the data, claim the output folder, return the plan and tracks."""
    if shifts < 0 or (shifts and (ckpt is None or baseline is not None)):
        raise EvaluationError(
            f"shifts average a checkpoint's separations over random delays: expected 0 or "
            f"more with a checkpoint and no baseline, got SHIFTS={shifts}"
            f"{' with BASELINE=' + baseline if baseline else ''}. Drop SHIFTS or the baseline."
        )
    if baseline is not None and baseline not in BASELINES:
        raise EvaluationError(f"unknown baseline {baseline!r}: expected one of {BASELINES}.")
    if metrics not in BACKENDS:
        raise EvaluationError(f"unknown metrics backend {metrics!r}: expected one of {BACKENDS}.")
    if ckpt is None and baseline is None:
        raise EvaluationError(
            "nothing to evaluate: pass a checkpoint (CKPT=path) or a baseline "
            f"(BASELINE={'|'.join(BASELINES)})."
        )
    is_wav = detect_is_wav(root)
    tracks = list_tracks(root, subset, is_wav)
    require_ffmpeg(tracks)
    stems = dataset_stems(tracks)
    chosen = _baseline_targets(targets, baseline, stems)
    digest, segment, rate, sources = None, None, SAMPLE_RATE, stems
    if ckpt is not None:
        ckpt = str(Path(ckpt).resolve())
        sources, rate, segment = _checkpoint_targets(Path(ckpt), device)
        digest = _file_digest(Path(ckpt))
    sources = chosen or sources
    plan = Plan(
        root=str(Path(root).resolve()),
        is_wav=is_wav,
        subset=subset,
        out=str(Path(out or default_out(ckpt, baseline, subset, chosen, shifts)).resolve()),
        ckpt=ckpt,
        baseline=baseline,
        sources=tuple(sources),
        stems=stems,
        groups=tuple(scoring_groups(sources, stems)),
        sample_rate=dataset_rate(root, subset, is_wav),
        net_rate=rate,
        segment_samples=segment,
        metrics=metrics,
        device=device,
        shifts=shifts,
    )
    names = [t.name for t in tracks]
    _claim_out(Path(plan.out), _manifest(plan, digest, names))
    return plan, names
