"""BSS Eval v4 images metrics, as ``museval.evaluate`` computes them, in batched torch.

museval's default mode (``mode="v4"``) fits one set of 512-tap multichannel
distortion filters per estimate on the whole track (least squares on delayed
copies of the references), then cuts references and estimates into frames and
measures, per frame, the energies of the filtered references against the
estimate: SDR, ISR, SIR and SAR (``museval/metrics.py``: ``bss_eval`` with
``framewise_filters=False``, ``bsseval_sources_version=False``). This module
computes the same quantities in float64 with three changes that alter only
rounding, never the math:

- correlations are accumulated from blocks of the signals (bounded memory);
- the normal equations, which are block Toeplitz, are solved with the block
  Levinson recursion in O(filters_len**2) instead of a dense LU in
  O(filters_len**3); when its backward error is not as small as a dense
  solver's, museval's own dense path (LU of ``G + eps * I``, least squares if
  singular) is used instead; a channel equal to another of its source (mono
  stored as stereo), which makes ``G`` singular, is left out of the span it
  does not extend, which changes no projection;
- the framewise projections and energies are computed in the frequency domain
  with FFTs long enough that circular and linear convolution agree (Parseval).

Silent frames (any reference or estimate source whose channels sum to zero over
the whole frame) are NaN, and zero denominators give ``inf``, as in museval.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import museval
import numpy as np
import torch

from ablation.bsseval.filters import distortion_filters
from ablation.bsseval.frames import framewise_metrics
from ablation.bsseval.inputs import check_sizes, prepare
from ablation.threads import limited_threads

__all__ = ["evaluate", "score_track"]


def evaluate(
    references: np.ndarray | Sequence[np.ndarray],
    estimates: np.ndarray | Sequence[np.ndarray],
    win: int = 1 * 44100,
    hop: int = 1 * 44100,
    mode: str = "v4",
    padding: bool = True,
    *,
    filters_len: int = 512,
    block_frames: int | None = None,
    device: str | torch.device = "cpu",
    threads: int | None = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """BSS Eval v4 images metrics per frame, equal to ``museval.evaluate``'s.

    Args:
        references: true sources, shape ``(sources, samples, channels)`` (or a
            list of ``(samples, channels)`` arrays), any real dtype; computed
            in float64 like museval.
        estimates: estimated sources, same layout as ``references``.
        win: frame length in samples.
        hop: hop between frames in samples.
        mode: only ``"v4"`` (time-invariant filters) is implemented.
        padding: pad or truncate the estimates to the length of the references,
            as museval does.
        filters_len: number of taps of the distortion filters.
        block_frames: frames processed at once, which bounds memory on long
            tracks; ``None`` picks 2 on the CPU and 32 on other devices.
            Results do not depend on it.
        device: torch device for the computation.
        threads: torch and BLAS / OpenMP threads used on the CPU during the
            call (restored after it); ``None`` keeps the process's settings.
            One is the fast default: on a busy machine the many small
            parallel regions wait for descheduled threads and run several
            times slower, and on an idle one more threads gain little. To
            score many tracks, run a process per core.

    Returns:
        ``(SDR, ISR, SIR, SAR)``, each a float64 array of shape
        ``(sources, frames)`` in dB; NaN in silent frames, ``inf`` where the
        distortion is exactly zero.

    Raises:
        ValueError: for anything ``museval.evaluate`` rejects (shapes, silent
            sources), for ``mode != "v4"`` and for non-positive sizes.
    """
    if mode != "v4":
        raise ValueError(
            f"mode={mode!r} is not implemented here: expected 'v4' (museval's default). "
            "Use museval.evaluate for BSS Eval v3."
        )
    check_sizes(win=win, hop=hop, filters_len=filters_len, block_frames=block_frames)
    win, hop = int(win), int(hop)
    references, estimates = prepare(references, estimates, padding)
    if references.size == 0 or estimates.size == 0:
        empty = np.array([])
        return empty, empty, empty, empty

    device = torch.device(device)
    refs = torch.from_numpy(references)
    ests = torch.from_numpy(estimates)
    # The filters are solved with numpy on the CPU whatever the device.
    with limited_threads(threads):
        cross, spat = distortion_filters(refs, ests, filters_len, device)
        return framewise_metrics(refs, ests, cross, spat, win, hop, block_frames, device)


def score_track(
    references: Mapping[str, np.ndarray],
    estimates: Mapping[str, np.ndarray],
    track_name: str,
    win: int = 44100,
    hop: int = 44100,
    rate: int = 44100,
    backend: str = "torch",
    device: str | torch.device = "cpu",
) -> museval.TrackStore:
    """Score one track into museval's own ``TrackStore``, as ``museval.eval_mus_track`` does.

    The targets present in both dicts are evaluated together, in the order of
    ``references``; when both ``vocals`` and ``accompaniment`` are present, the
    pair is evaluated on its own and the other targets without accompaniment,
    exactly as ``eval_mus_track`` does, so the JSON (``store.json``) and the
    aggregation (``museval.EvalStore``) are museval's.

    Args:
        references: target name -> reference audio, shape ``(samples, channels)``.
        estimates: target name -> estimated audio, shape ``(samples, channels)``;
            names absent from ``references`` are ignored.
        track_name: name stored in the TrackStore.
        win: frame length in samples.
        hop: hop between frames in samples.
        rate: sample rate, to store frame times and durations in seconds.
        backend: ``"torch"`` (this module) or ``"museval"`` (``museval.evaluate``).
        device: torch device for the ``"torch"`` backend.

    Returns:
        The track's scores, frame times ``i * hop / rate`` seconds.
    """
    if backend not in ("torch", "museval"):
        raise ValueError(f"backend={backend!r}: expected 'torch' or 'museval'.")
    store = museval.TrackStore(win=win / rate, hop=hop / rate, track_name=track_name)
    for group, keep in _target_groups([name for name in references if name in estimates]):
        refs = [references[name] for name in group]
        ests = [estimates[name] for name in group]
        if backend == "torch":
            scores = evaluate(refs, ests, win=win, hop=hop, device=device)
        else:
            scores = museval.evaluate(refs, ests, win=win, hop=hop)
        sdr, isr, sir, sar = scores
        for i, name in enumerate(group):
            if name in keep:
                values = {
                    "SDR": sdr[i].tolist(),
                    "SIR": sir[i].tolist(),
                    "ISR": isr[i].tolist(),
                    "SAR": sar[i].tolist(),
                }
                store.add_target(target_name=name, values=values)
    return store


def _target_groups(targets: list[str]) -> list[tuple[list[str], set[str]]]:
    """Groups of targets evaluated together and the names each group stores.

    Mirrors ``museval.eval_mus_track``: with vocals and accompaniment, the
    other targets are scored with vocals (whose scores are dropped), then the
    vocals/accompaniment pair on its own; a group needs two targets.
    """
    has_acc = "vocals" in targets and "accompaniment" in targets
    main = [name for name in targets if not (has_acc and name == "accompaniment")]
    groups = []
    if len(main) >= 2:
        groups.append((main, {name for name in main if not (has_acc and name == "vocals")}))
    elif not has_acc:
        warnings.warn(
            UserWarning(
                f"BSS Eval needs at least two targets evaluated together, got {targets}: "
                "the track's scores are empty. Pass two or more targets."
            ),
            stacklevel=3,
        )
    if has_acc:
        pair = ["vocals", "accompaniment"]
        groups.append((pair, set(pair)))
    return groups
