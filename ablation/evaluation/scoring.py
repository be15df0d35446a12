"""Scoring one track: BSS Eval of its estimates against its references, group by group,
into museval's TrackStore (either backend), plus MSE, written as the track's JSON."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import HOP_SECONDS, METRICS, WIN_SECONDS, Group
from ablation.evaluation.separation import estimate
from ablation.evaluation.tracks import Track, check_rate, load_track, references
from ablation.files import write_text


def _fit_length(audio: np.ndarray, samples: int) -> np.ndarray:
    # museval's pad_or_truncate: estimates take the reference length.
    if len(audio) >= samples:
        return audio[:samples]
    return np.pad(audio, [(0, samples - len(audio)), (0, 0)])


def _nan_store(track_name: str, names: Sequence[str], samples: int, rate: int):
    from museval import TrackStore
    from museval.metrics import Framing

    frames = Framing(int(WIN_SECONDS * rate), int(HOP_SECONDS * rate), samples).nwin
    store = TrackStore(track_name, win=WIN_SECONDS, hop=HOP_SECONDS)
    for name in names:
        store.add_target(name, {metric: [math.nan] * frames for metric in METRICS})
    return store


def score_group(
    plan: Plan,
    track_name: str,
    group: Group,
    refs: dict[str, np.ndarray],
    estimates: dict[str, np.ndarray],
) -> tuple[list[dict], list[str]]:
    """Score one group; return the kept targets' museval entries and the silent targets.

    museval refuses a reference or estimate that is silent throughout; a window
    with any silent signal has no score anyway, so such a group gets NaN frames
    (counted in the summary) instead of an error.
    """
    from ablation.bsseval import score_track

    samples = len(refs[group.together[0]])
    refs = {n: refs[n] for n in group.together}
    ests = {n: _fit_length(estimates[n], samples) for n in group.together}
    silent = [n for n in group.together if not np.any(refs[n]) or not np.any(ests[n])]
    if silent:
        store = _nan_store(track_name, group.together, samples, plan.sample_rate)
    else:
        store = score_track(
            refs,
            ests,
            track_name,
            win=int(WIN_SECONDS * plan.sample_rate),
            hop=int(HOP_SECONDS * plan.sample_rate),
            rate=plan.sample_rate,
            backend=plan.metrics,
            device=plan.device,
        )
    kept = [t for t in store.scores["targets"] if t["name"] in group.kept]
    return kept, silent


def score_track_file(plan: Plan, name: str) -> dict[str, Any]:
    """Separate (or build the baseline of) one track, score it, write its JSON atomically.

    Returns:
        ``{"track", "seconds" (of audio), "wall" (seconds spent), "silent"}``.
    """
    start = time.perf_counter()
    track = load_track(plan, name)
    check_rate(plan, track)
    store, mixture, silent = _score(plan, track)
    write_text(plan.track_file(name), store.json)
    return {
        "track": name,
        "seconds": len(mixture) / plan.sample_rate,
        "wall": time.perf_counter() - start,
        "silent": silent,
    }


def _score(plan: Plan, track: Track) -> tuple[Any, np.ndarray, list[str]]:
    from museval import TrackStore

    name, mixture = track.name, track.mixture
    estimates = estimate(plan, track, mixture)
    store = TrackStore(name, win=WIN_SECONDS, hop=HOP_SECONDS)
    silent, mse = [], {}
    for group in plan.groups:
        refs = references(track, group.together, plan.sources)
        kept, group_silent = score_group(plan, name, group, refs, estimates)
        store.scores["targets"] += kept
        silent += [n for n in group_silent if n not in silent]
        for target in group.kept:
            error = _fit_length(estimates[target], len(refs[target])) - refs[target]
            mse[target] = float(np.mean(error**2))
    store.scores.update(
        mse=mse,
        samples=len(mixture),
        scored_together=[list(g.together) for g in plan.groups],
        silent=silent,
    )
    store.validate()
    return store, mixture, silent
