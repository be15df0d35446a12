"""Reading the test tracks through :mod:`ablation.tracks` (the reader training uses): the
track list, decoded audio, references, sample rates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ablation.constants import target_members
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
        sources: stem name -> ``(samples, channels)`` float64, every stem of the track.
    """

    name: str
    rate: int
    mixture: np.ndarray
    sources: dict[str, np.ndarray]


def _sum_of(sources: dict[str, np.ndarray], stems) -> np.ndarray:
    """The sum of ``stems`` of ``sources``, float64.

    musdb's targets are such sums (accompaniment: all but the vocals; linear_mixture: all),
    and 16-bit samples sum exactly in float64, so these are the values musdb gives.
    """
    return np.sum(np.array([sources[s] for s in sources if s in stems]), axis=0)


def _tracks(root: str, subset: str, is_wav: bool) -> dict[str, TrackRef]:
    """The subset's tracks by name, listed once a process."""
    key = ("tracks", root, is_wav, subset)
    return cached(key, lambda: {t.name: t for t in list_tracks(root, subset, is_wav)})


def decode(ref: TrackRef) -> Track:
    """Decode a track: its stems and its mixture (checked against them,
    :func:`check_mixture`)."""
    stems, rate = decode_stems(ref)
    sources = {s: stems[i].T.astype(np.float64) for i, s in enumerate(ref.stems)}
    mixture = decode_mixture(ref)
    # An HQ folder without mixture.wav: musdb's linear mixture, the sum of the sources.
    if mixture is None:
        mixture = _sum_of(sources, sources)
    else:
        mixture = mixture.T.astype(np.float64)
        check_mixture(ref.name, mixture, _sum_of(sources, sources), rate)
    return Track(name=ref.name, rate=rate, mixture=mixture, sources=sources)


# The stored mixture of a MUSDB18 track is the sum of its stems up to coding noise: about
# -32 dB for the compressed stems (each stream coded apart), far below for the HQ wavs. A
# mixture shifted by one sample against its stems is already near -15 dB.
MAX_RESIDUAL_DB = -20.0


def best_lag(mixture: np.ndarray, stems_sum: np.ndarray, rate: int) -> int:
    """The shift (samples, within 1 s) that best aligns the mixture with the sum of the
    stems, from their cross-correlation over the first 30 s (mono)."""
    n = min(len(mixture), 30 * rate)
    a, b = mixture[:n].mean(-1), stems_sum[:n].mean(-1)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    lags = np.r_[np.arange(0, min(rate, n)), np.arange(-min(rate, n) + 1, 0)]
    return int(lags[np.argmax(corr[lags])])


def check_mixture(name: str, mixture: np.ndarray, stems_sum: np.ndarray, rate: int) -> None:
    """Refuse a stored mixture that is not the track's stems added up: another length,
    silence over audible stems, or a shift or other signal (SDR would be computed for a
    separation of the wrong input, without a word).

    Raises:
        EvaluationError: naming the track and what was found.
    """
    fix = "Restore the track's mixture (or remove it: the sum of the stems is used then)."
    if mixture.shape != stems_sum.shape:
        raise EvaluationError(
            f"track {name!r}: its mixture has {mixture.shape[0]} samples, its stems "
            f"{stems_sum.shape[0]} (shapes {mixture.shape} and {stems_sum.shape}): expected "
            f"equal lengths, as training requires. {fix}"
        )
    energy, stems_energy = float(np.sum(mixture**2)), float(np.sum(stems_sum**2))
    if energy == 0.0:
        state = "so are its stems" if stems_energy == 0.0 else "its stems are not"
        raise EvaluationError(
            f"track {name!r}: its mixture is silent (all zeros) and {state}: expected music "
            f"to separate. {fix}"
        )
    residual_db = 10 * np.log10(max(float(np.sum((mixture - stems_sum) ** 2)), 1e-30) / energy)
    if residual_db > MAX_RESIDUAL_DB:
        lag = best_lag(mixture, stems_sum, rate)
        found = f"shifted by {lag} samples" if lag else "another signal"
        raise EvaluationError(
            f"track {name!r}: its mixture differs from the sum of its stems by "
            f"{residual_db:.1f} dB (expected below {MAX_RESIDUAL_DB:.0f} dB); it looks "
            f"{found}. {fix}"
        )


def load_track(plan: Plan, name: str) -> Track:
    """Decode the track ``name`` of the plan's subset: its sources and its mixture."""
    return decode(_tracks(plan.root, plan.subset, plan.is_wav)[name])


def references(
    track: Track, names: Sequence[str], estimated: Sequence[str]
) -> dict[str, np.ndarray]:
    """References ``(samples, channels)`` of ``names``: the track's stems, their sums
    (``accompaniment``: every stem but the vocals), and for ``rest`` the sum of the stems
    that no other target of the estimator's ``estimated`` sources holds."""
    stems = tuple(track.sources)
    refs = {}
    for name in names:
        if name == COMPLEMENT:
            held = {m for t in estimated if t != COMPLEMENT for m in target_members(t, stems)}
            refs[name] = _sum_of(track.sources, set(stems) - held)
        else:
            refs[name] = _sum_of(track.sources, target_members(name, stems))
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
