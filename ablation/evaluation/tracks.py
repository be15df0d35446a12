"""Reading the test tracks: musdb's track list, decoded audio, references, sample rates."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import soundfile as sf

from ablation.constants import SOURCES
from ablation.evaluation.cache import cached
from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import COMPLEMENT, EvaluationError


def _read_wav(path: str) -> np.ndarray:
    audio, _ = sf.read(path, always_2d=True, dtype="float64")
    return audio


def load_track(track: Any, is_wav: bool) -> np.ndarray:
    """Decode a musdb track once and return its mixture ``(samples, channels)``.

    The sources are decoded once and cached on the track, so every
    ``track.targets[name].audio`` afterwards is the sum musdb (and museval) use.
    HQ folders are read with soundfile (the same samples stempeg gives) because
    they may lack ``mixture.wav``; the mixture is then the sum of the stems.
    """
    missing = sorted(set(SOURCES) - set(track.sources))
    if missing:
        raise EvaluationError(
            f"track {track.name!r} has no {', '.join(missing)} stem: expected all of "
            f"{list(SOURCES)}. Complete the track folder or remove it from the subset."
        )
    for source in track.sources.values():
        source.audio = _read_wav(source.path) if is_wav else source.audio
    if is_wav and not os.path.exists(track.path):
        return track.targets["linear_mixture"].audio
    return _read_wav(track.path) if is_wav else track.audio


def references(track: Any, names: Sequence[str], single: str | None) -> dict[str, np.ndarray]:
    """References ``(samples, channels)`` of ``names`` from a track read by load_track:
    musdb's targets, and for ``rest`` the sum of the sources other than ``single``."""
    return {
        name: sum(track.targets[s].audio for s in SOURCES if s != single)
        if name == COMPLEMENT
        else track.targets[name].audio
        for name in names
    }


def _database(root: str, is_wav: bool, subset: str) -> Any:
    import musdb

    return musdb.DB(root=root, is_wav=is_wav, subsets=subset)


def find_track(plan: Plan, name: str) -> Any:
    """The musdb track ``name`` of the plan's subset; the track list is read once a process."""
    key = ("db", plan.root, plan.is_wav, plan.subset)
    database = cached(key, lambda: _database(plan.root, plan.is_wav, plan.subset))
    tracks = {t.name: t for t in database.tracks}
    return tracks[name]


def track_rate(track: Any, is_wav: bool) -> int:
    """The sample rate of a musdb track, read from its file header."""
    path = next(iter(track.sources.values())).path if is_wav else track.path
    return sf.info(path).samplerate if is_wav else int(track.rate)


def dataset_rate(root: str, subset: str, is_wav: bool) -> int:
    """Sample rate of the subset's first track (MUSDB18 itself: 44.1 kHz)."""
    return track_rate(_database(root, is_wav, subset).tracks[0], is_wav)


def check_rate(plan: Plan, track: Any) -> None:
    """Refuse a track whose rate is not the subset's: scoring windows are 1 s of it."""
    rate = track_rate(track, plan.is_wav)
    if rate != plan.sample_rate:
        raise EvaluationError(
            f"track {track.name!r} is sampled at {rate} Hz, the first track of the subset at "
            f"{plan.sample_rate} Hz: expected one rate for the whole subset (1 s scoring "
            f"windows). Resample the odd tracks."
        )
