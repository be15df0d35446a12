"""Helpers shared by the evaluation tests: toy checkpoints, cheap evaluations, reading
museval's per-track JSON."""

from __future__ import annotations

from pathlib import Path

import musdb
import numpy as np
import simplejson
import soundfile as sf
import torch

from ablation.evaluation import METRICS, evaluate_checkpoint

RATE = 44100
FOUR = ("vocals", "drums", "bass", "other")
PAIR = ("vocals", "accompaniment")


def write_checkpoint(
    path: Path, seed: int = 0, epoch: int = 0, step: int = 3, sample_rate: int = 44100
) -> Path:
    """A checkpoint as Lightning writes it for WaveUNetModule (no optimizer state)."""
    from lightning_modules import WaveUNetModule

    torch.manual_seed(seed)
    module = WaveUNetModule(depth=2, filters=4, segment=1.0, sample_rate=sample_rate)
    checkpoint = {
        "epoch": epoch,
        "global_step": step,
        "hyper_parameters": dict(module.hparams),
        "state_dict": module.state_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def evaluate_pair(root: Path, out: Path, **options) -> Path:
    """A baseline (the mixture unless told) on the (vocals, accompaniment) pair: the
    cheapest scoring."""
    options = {"baseline": "mixture", "jobs": 1, "wandb_log": False, "progress": False} | options
    return evaluate_checkpoint(None, str(root), targets="2stems", out=str(out), **options)


def toy_track(root: Path, index: int = 0):
    return musdb.DB(root=str(root), is_wav=True, subsets="test").tracks[index]


def frames(store_json: str | dict) -> dict[str, list[dict]]:
    data = (
        simplejson.loads(store_json, allow_nan=True) if isinstance(store_json, str) else store_json
    )
    return {t["name"]: t["frames"] for t in data["targets"]}


def metric_array(target_frames: list[dict]) -> np.ndarray:
    return np.array([[float(f["metrics"][m]) for m in METRICS] for f in target_frames])


def assert_frames_match(ours: list[dict], theirs: list[dict]) -> None:
    # The torch backend solves museval's ill-conditioned normal equations another way:
    # equal well below the 0.01 dB that results are reported to, not to the last digit.
    assert [f["time"] for f in ours] == [f["time"] for f in theirs]
    np.testing.assert_allclose(metric_array(ours), metric_array(theirs), atol=1e-2, rtol=0)


def track_json(out: Path, name: str) -> dict:
    return simplejson.loads((out / "test" / f"{name}.json").read_text(), allow_nan=True)


def stem(folder: Path, target: str) -> np.ndarray:
    names = ("drums", "bass", "other") if target == "accompaniment" else (target,)
    return sum(sf.read(folder / f"{name}.wav", always_2d=True)[0] for name in names)
