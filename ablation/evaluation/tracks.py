"""Reading the test tracks through :mod:`ablation.tracks` (the reader training uses): the
track list, decoded audio, references, sample rates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ablation.constants import SOURCES
from ablation.evaluation.cache import cached
from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import COMPLEMENT, EvaluationError
from ablation.tracks import TrackRef, decode_mixture, decode_stems, list_tracks, track_rate


@dataclass(frozen=True)
class Track:
    """One decoded test track: what scoring and museval's TrackStore need.

    Attributes:
        name: track name (museval's per-track file is named after it).
        rate: sample rate of its files.
        mixture: ``(samples, channels)`` float64, the stored mixture (or the sum of the
            sources for an HQ folder without ``mixture.wav``).
        sources: source name -> ``(samples, channels)`` float64.
    """

    name: str
    rate: int
    mixture: np.ndarray
    sources: dict[str, np.ndarray]


def _sum_except(sources: dict[str, np.ndarray], left_out: str | None) -> np.ndarray:
    """The sum of the sources other than ``left_out`` (all of them for None), float64.

    musdb's targets are such sums (accompaniment: all but the vocals; linear_mixture: all),
    and 16-bit samples sum exactly in float64, so these are the values musdb gives.
    """
    return np.sum(np.array([sources[s] for s in SOURCES if s != left_out]), axis=0)


def _tracks(root: str, subset: str, is_wav: bool) -> dict[str, TrackRef]:
    """The subset's tracks by name, listed once a process."""
    key = ("tracks", root, is_wav, subset)
    return cached(key, lambda: {t.name: t for t in list_tracks(root, subset, is_wav)})


def load_track(plan: Plan, name: str) -> Track:
    """Decode the track ``name`` of the plan's subset: its sources and its mixture."""
    ref = _tracks(plan.root, plan.subset, plan.is_wav)[name]
    stems, rate = decode_stems(ref)
    sources = {s: stems[i].T.astype(np.float64) for i, s in enumerate(SOURCES)}
    mixture = decode_mixture(ref)
    # An HQ folder without mixture.wav: musdb's linear mixture, the sum of the sources.
    mixture = _sum_except(sources, None) if mixture is None else mixture.T.astype(np.float64)
    return Track(name=name, rate=rate, mixture=mixture, sources=sources)


def references(track: Track, names: Sequence[str], single: str | None) -> dict[str, np.ndarray]:
    """References ``(samples, channels)`` of ``names``: musdb's targets, and for ``rest``
    the sum of the sources other than ``single``."""
    refs = {}
    for name in names:
        if name in (COMPLEMENT, "accompaniment"):
            refs[name] = _sum_except(track.sources, single if name == COMPLEMENT else "vocals")
        else:
            refs[name] = track.sources[name]
    return refs


def dataset_rate(root: str, subset: str, is_wav: bool) -> int:
    """Sample rate of the subset's first track (MUSDB18 itself: 44.1 kHz)."""
    return track_rate(list_tracks(root, subset, is_wav)[0])


def check_rate(plan: Plan, track: Track) -> None:
    """Refuse a track whose rate is not the subset's: scoring windows are 1 s of it."""
    if track.rate != plan.sample_rate:
        raise EvaluationError(
            f"track {track.name!r} is sampled at {track.rate} Hz, the first track of the subset "
            f"at {plan.sample_rate} Hz: expected one rate for the whole subset (1 s scoring "
            f"windows). Resample the odd tracks."
        )
