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

import itertools
import numbers
import warnings
from collections.abc import Mapping, Sequence

import museval
import numpy as np
import scipy.fft
import torch
from museval import metrics as museval_metrics

from ablation.threads import limited_threads

__all__ = ["evaluate", "score_track"]

# museval's regularisation of the normal equations: G + eps * I.
_EPS = float(np.finfo(float).eps)
# FFT length of the correlation blocks (each covers n_fft - filters_len + 1
# samples), at least 4 * filters_len.
_CORR_FFT = 2**14
# Correlation blocks transformed at once.
_CORR_GROUP = 8
# Frames per batch: few on the CPU to keep the spectra in cache, more on
# accelerators to fill them (about 1 GB of buffers for 4 stereo sources).
_CPU_BLOCK_FRAMES = 2
_DEVICE_BLOCK_FRAMES = 32
# Backward error above which the Levinson solution is not trusted to equal a
# dense solver's (a backward-stable LU reaches ~1e-15 on these systems).
_BACKWARD_ERROR_TOL = 1e-11


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
    _check_sizes(win=win, hop=hop, filters_len=filters_len, block_frames=block_frames)
    win, hop = int(win), int(hop)
    references, estimates = _prepare(references, estimates, padding)
    if references.size == 0 or estimates.size == 0:
        empty = np.array([])
        return empty, empty, empty, empty

    device = torch.device(device)
    refs = torch.from_numpy(references)
    ests = torch.from_numpy(estimates)
    # The filters are solved with numpy on the CPU whatever the device.
    with limited_threads(threads):
        cross, spat = _distortion_filters(refs, ests, filters_len, device)
        return _framewise_metrics(refs, ests, cross, spat, win, hop, block_frames, device)


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


def _check_sizes(**sizes: int | None) -> None:
    for name, value in sizes.items():
        integral = isinstance(value, numbers.Integral) or (
            isinstance(value, float) and value.is_integer()
        )
        if value is not None and not (integral and value >= 1):
            raise ValueError(
                f"{name} must be a positive whole number of samples, got {value!r}; "
                "to score the whole signal as one frame, pass win=hop=its length."
            )


def _prepare(references, estimates, padding: bool) -> tuple[np.ndarray, np.ndarray]:
    """museval's input handling: array conversion, padding, shape and silence checks."""
    estimates = np.asarray(estimates)
    references = np.asarray(references)
    if padding:
        references, estimates = museval.pad_or_truncate(references, estimates)
    # museval computes in float64 whatever it is given.
    estimates = np.atleast_3d(_floating(estimates))
    references = np.atleast_3d(_floating(references))
    # museval's checks on shapes and sizes, on empty stand-ins: its silence
    # check scans the whole arrays slowly, _check_not_silent does it in blocks.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        museval_metrics.validate(
            np.empty(references.shape[:1] + (0,) + references.shape[2:]),
            np.empty(estimates.shape[:1] + (0,) + estimates.shape[2:]),
        )
    if references.shape != estimates.shape:
        raise ValueError(
            f"references and estimates must have the same shape (sources, samples, "
            f"channels), got {references.shape} and {estimates.shape}."
        )
    if references.size == 0:
        warnings.warn(
            "references and estimates are empty: expected (sources, samples, channels) "
            "audio; SDR, ISR, SIR and SAR are empty arrays.",
            stacklevel=3,
        )
        return references, estimates
    _check_not_silent(references, "reference")
    _check_not_silent(estimates, "estimated")
    return _positive_strides(references), _positive_strides(estimates)


def _positive_strides(array: np.ndarray) -> np.ndarray:
    """The array itself when torch can view it (it cannot view reversed arrays)."""
    return array if all(stride >= 0 for stride in array.strides) else array.copy()


def _floating(array: np.ndarray) -> np.ndarray:
    return array if array.dtype.kind == "f" else array.astype(np.float64)


def _check_not_silent(sources: np.ndarray, kind: str, block: int = 2**16) -> None:
    """museval's ``_any_source_silent`` check, stopping at each source's first sound."""
    silent = list(range(sources.shape[0]))
    for start in range(0, sources.shape[1], block):
        summed = sources[silent, start : start + block].sum(axis=2)
        silent = [j for j, row in zip(silent, summed, strict=True) if not row.any()]
        if not silent:
            return
    raise ValueError(
        f"{kind} source(s) {silent} are all zeros (their channels sum to zero everywhere): "
        "BSS Eval needs every reference and estimated source to be non-silent. "
        "Leave silent targets out of the evaluation."
    )


# ---------------------------------------------------------------- filters


def _distortion_filters(
    refs: torch.Tensor, ests: torch.Tensor, filters_len: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """museval's time-invariant projection filters, fitted on the whole signals.

    The correlations are computed on ``device``; the small normal equations
    are solved with numpy on the CPU, where a sequential recursion is fastest.

    Returns:
        ``cross``: ``(sources_est, sources_ref, channels_in, filters_len,
        channels_out)``, the projection of each estimate on all references
        (museval's ``C``); ``spat``: ``(sources, channels_in, filters_len,
        channels_out)``, the projection of estimate ``j`` on reference ``j``
        alone (museval's ``Cj``).
    """
    nsrc, _, nchan = refs.shape
    n_ref = nsrc * nchan
    corr = _lagged_correlations(refs, ests, filters_len, device).cpu().numpy()
    # lags[k][a, b] = sum_t x_a[t + k] x_b[t]: museval's G in (lag, signal) order.
    lags = corr[:n_ref].transpose(2, 0, 1)
    # rhs[k][a, e] = sum_t x_a[t - k] y_e[t]: museval's D.
    rhs = corr[n_ref:].transpose(2, 1, 0)
    own_lags, own_rhs = _own_blocks(lags, nsrc), _own_blocks(rhs, nsrc)
    distinct = _distinct_channels(refs)
    if distinct.all():
        # One Levinson run for both: the own-source systems side by side as one
        # block-diagonal system of the same size as the full one.
        solutions, solved = _block_levinson(
            _regularised(np.stack([lags, _block_diagonal(own_lags)])),
            np.stack([rhs, _block_diagonal(own_rhs)]),
        )
        cross = _verified(lags[None], rhs[None], solutions[:1], solved[:1])[0]
        spat = _verified(
            own_lags, own_rhs, _own_blocks(solutions[1], nsrc), np.repeat(solved[1:], nsrc)
        )
    else:
        cross = _solve_distinct(lags, rhs, distinct.reshape(-1))
        own = zip(own_lags, own_rhs, distinct, strict=True)
        spat = np.stack([_solve_distinct(lags_j, rhs_j, keep) for lags_j, rhs_j, keep in own])
    cross = cross.reshape(filters_len, nsrc, nchan, nsrc, nchan).transpose(3, 1, 2, 0, 4)
    spat = spat.transpose(0, 2, 1, 3)
    return (
        torch.from_numpy(np.ascontiguousarray(cross)).to(device),
        torch.from_numpy(np.ascontiguousarray(spat)).to(device),
    )


def _distinct_channels(refs: torch.Tensor, block: int = 2**16) -> np.ndarray:
    """``(sources, channels)``, False for a channel equal to an earlier one of its
    source (a mono source stored as stereo), found by scanning until they differ."""
    nsrc, nsamples, nchan = refs.shape
    distinct = np.ones((nsrc, nchan), dtype=bool)
    for j, c in itertools.product(range(nsrc), range(1, nchan)):
        for other in range(c):
            start = 0
            while start < nsamples and torch.equal(
                refs[j, start : start + block, c], refs[j, start : start + block, other]
            ):
                start += block
            if start >= nsamples:
                distinct[j, c] = False
                break
    return distinct


def _solve_distinct(lags: np.ndarray, rhs: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Solve one system on the signals in ``keep``, zero filters for the others.

    A channel equal to another makes museval's ``G`` singular: its delayed copies
    add nothing to the span, so any solution gives the same projections, and the
    one without them is as cheap and exact as the full-rank case.
    """
    sub_lags, sub_rhs = lags[:, keep][:, :, keep], rhs[:, keep]
    solution, solved = _block_levinson(_regularised(sub_lags[None]), sub_rhs[None])
    out = np.zeros(rhs.shape)
    out[:, keep] = _verified(sub_lags[None], sub_rhs[None], solution, solved)[0]
    return out


def _own_blocks(x: np.ndarray, nsrc: int) -> np.ndarray:
    """Source-diagonal blocks: ``(L, nsrc * c, nsrc * c)`` -> ``(nsrc, L, c, c)``."""
    own = np.arange(nsrc)
    return x.reshape(x.shape[0], nsrc, -1, nsrc, x.shape[-1] // nsrc)[:, own, :, own]


def _block_diagonal(blocks: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_own_blocks`, zero off the diagonal blocks."""
    nsrc, nlags, c, _ = blocks.shape
    own = np.arange(nsrc)
    out = np.zeros((nlags, nsrc, c, nsrc, c))
    out[:, own, :, own] = blocks
    return out.reshape(nlags, nsrc * c, nsrc * c)


def _regularised(lags: np.ndarray) -> np.ndarray:
    """``G + eps * I`` as museval solves it: eps on the lag-0 diagonal."""
    out = lags.copy()
    out[..., 0, :, :] += _EPS * np.eye(lags.shape[-1])
    return out


def _verified(
    lags: np.ndarray, rhs: np.ndarray, solution: np.ndarray, solved: np.ndarray
) -> np.ndarray:
    """Keep Levinson solutions as accurate as a dense solver's; redo the others densely.

    Args:
        lags: ``(batch, L, s, s)``; rhs, solution: ``(batch, L, s, m)``;
        solved: ``(batch,)``, False where the recursion broke down.
    """
    error = _backward_error(_regularised(lags), solution, rhs)
    solution = solution.copy()
    for i in np.flatnonzero(~(solved & (error < _BACKWARD_ERROR_TOL))):
        solution[i] = _solve_dense(lags[i], rhs[i])
    return solution


def _block_levinson(lags: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Block Levinson recursion for symmetric block Toeplitz systems.

    Grows forward and backward predictors (``T_n F = [E_f, 0, ...]``,
    ``T_n B = [..., 0, E_b]``) and the solution one block at a time, in place
    in preallocated buffers.

    Args:
        lags: ``(batch, L, s, s)``: block ``(p, q)`` of ``T`` is ``lags[q - p]``
            for ``q >= p`` and ``lags[p - q].T`` otherwise.
        rhs: ``(batch, L, s, m)``.

    Returns:
        The solutions ``(batch, L, s, m)`` and ``(batch,)``, False where the
        recursion broke down on a singular prediction-error matrix.
    """
    batch, nlags, s, m = rhs.shape
    # Row n of T, blocks 0..n-1, is lags[n]^T ... lags[1]^T: stored reversed and
    # side by side so that each step reads one slice.
    row = np.ascontiguousarray(lags.swapaxes(-1, -2)[:, ::-1].transpose(0, 2, 1, 3))
    row = row.reshape(batch, s, nlags * s)
    # Blocks stacked along rows. forward: F_n in rows [0, n s); backward: B_n
    # right-aligned, ending at row (nlags + 1) s. The zero block next to each
    # is the padding of the recursion, so [F_n; 0] and [0; B_n] are views.
    forward = np.zeros((batch, nlags * s, s))
    backward = np.zeros((batch, (nlags + 1) * s, s))
    solution = np.zeros((batch, nlags * s, m))
    forward[:, :s] = np.eye(s)
    backward[:, nlags * s :] = np.eye(s)
    err_f = err_b = lags[:, 0]
    try:
        solution[:, :s] = np.linalg.solve(err_f, rhs[:, 0])
        for n in range(1, nlags):
            row_n = row[:, :, (nlags - 1 - n) * s : (nlags - 1) * s]
            delta_f = row_n @ forward[:, : n * s]
            theta = row_n @ solution[:, : n * s]
            delta_b = delta_f.swapaxes(-1, -2)
            gain_f = np.linalg.solve(err_b, delta_f)
            gain_b = np.linalg.solve(err_f, delta_b)
            f_pad = forward[:, : (n + 1) * s]
            b_pad = backward[:, (nlags - n) * s :]
            update_f = b_pad @ gain_f
            b_pad -= f_pad @ gain_b
            f_pad -= update_f
            err_f, err_b = err_f - delta_b @ gain_f, err_b - delta_f @ gain_b
            step = np.linalg.solve(err_b, rhs[:, n] - theta)
            solution[:, : (n + 1) * s] += b_pad @ step
    except np.linalg.LinAlgError:
        if batch == 1:
            return solution.reshape(rhs.shape), np.zeros(1, dtype=bool)
        # Solve the systems one by one, so one breakdown does not fail the others.
        parts = [_block_levinson(lags[i : i + 1], rhs[i : i + 1]) for i in range(batch)]
        return tuple(np.concatenate(part) for part in zip(*parts, strict=True))
    solution = solution.reshape(rhs.shape)
    return solution, np.isfinite(solution).reshape(batch, -1).all(1)


def _backward_error(lags: np.ndarray, solution: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``||T X - Y|| / (||T|| ||X|| + ||Y||)`` (Frobenius norms), per batch item."""
    nlags = lags.shape[-3]
    full = _two_sided(lags)
    # (T X)[p] = sum_q full[q - p] X[q]: a convolution of the flipped lags with X.
    n_fft = scipy.fft.next_fast_len(3 * nlags - 2, real=True)
    kernel_f = scipy.fft.rfft(full[:, ::-1], n_fft, axis=1)
    solution_f = scipy.fft.rfft(solution, n_fft, axis=1)
    product = scipy.fft.irfft(kernel_f @ solution_f, n_fft, axis=1)[:, nlags - 1 : 2 * nlags - 1]
    weights = np.concatenate([np.arange(1, nlags + 1), np.arange(nlags - 1, 0, -1)])
    matrix_norm = np.sqrt(np.einsum("bkij,k->b", full**2, weights))
    return _norm(product - rhs) / (matrix_norm * _norm(solution) + _norm(rhs))


def _norm(x: np.ndarray) -> np.ndarray:
    return np.sqrt((x**2).reshape(len(x), -1).sum(1))


def _two_sided(lags: np.ndarray) -> np.ndarray:
    """Blocks for lags ``-(L-1) .. L-1``: ``lags[-k] = lags[k].T``."""
    return np.concatenate([lags[:, :0:-1].swapaxes(-1, -2), lags], axis=1)


def _solve_dense(lags: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """museval's own solve of one system, in museval's (signal, lag) order:
    ``solve(G + eps * I, D)``, ``lstsq(G, D)`` when that is singular."""
    nlags, s, m = rhs.shape
    full = _two_sided(lags[None])[0]
    index = np.arange(nlags)
    # G[(a, p), (b, q)] = full[q - p][a, b]
    gram = full[index[None, :] - index[:, None] + nlags - 1].transpose(2, 0, 3, 1)
    gram = gram.reshape(s * nlags, s * nlags)
    d = rhs.transpose(1, 0, 2).reshape(s * nlags, m)
    try:
        solution = np.linalg.solve(gram + _EPS * np.eye(s * nlags), d)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(gram, d)[0]
    return solution.reshape(s, nlags, m).transpose(1, 0, 2)


# ---------------------------------------------------------------- correlations


def _lagged_correlations(
    refs: torch.Tensor, ests: torch.Tensor, filters_len: int, device: torch.device
) -> torch.Tensor:
    """``out[u, b, k] = sum_t lead_u[t + k] x_b[t]`` for ``k < filters_len``.

    ``lead`` are the reference channels then the estimate channels, ``x`` the
    reference channels, over the whole signals. Accumulated in the frequency
    domain block by block, so memory does not grow with the track: within each
    block, plus across each block's end (its last ``filters_len - 1`` samples
    of ``x`` against the first ones of ``lead`` after it).
    """
    n_ref = refs.shape[0] * refs.shape[2]
    halo = filters_len - 1
    n_fft = max(_CORR_FFT, scipy.fft.next_fast_len(4 * filters_len, real=True))
    # block + halo <= n_fft, so the circular correlation is the linear one.
    block = n_fft - halo
    n_edge = scipy.fft.next_fast_len(2 * halo, real=True) if halo else 0
    nblocks = -(-refs.shape[1] // block)
    inner = edge = None
    for first in range(0, nblocks, _CORR_GROUP):
        count = min(_CORR_GROUP, nblocks - first)
        blocks, heads = _blocks(refs, ests, first * block, count, block, n_fft, halo, device)
        spectra = _spectra(blocks, n_fft)
        inner = _add_cross_spectra(inner, spectra, spectra[:, :n_ref])
        if halo:
            lead = _spectra(torch.cat([torch.zeros_like(heads), heads], dim=-1), n_edge)
            tails = _spectra(blocks[:n_ref, :, block - halo : block], n_edge)
            edge = _add_cross_spectra(edge, lead, tails)
    corr = torch.fft.irfft(inner.permute(1, 2, 0), n_fft)[..., :filters_len]
    if halo:
        corr += torch.fft.irfft(edge.permute(1, 2, 0), n_edge)[..., :filters_len]
    return corr


def _blocks(
    refs: torch.Tensor,
    ests: torch.Tensor,
    start: int,
    count: int,
    block: int,
    n_fft: int,
    halo: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` consecutive blocks of ``refs`` then ``ests`` (``(sources, samples,
    channels)``) from ``start``, and the ``halo`` samples after each.

    Returns:
        float64 ``(2 * sources * channels, count, n_fft)``, blocks zero-padded
        from ``block`` to ``n_fft``, and ``(2 * sources * channels, count, halo)``;
        zero beyond the end of the signals.
    """
    nsrc, nsamples, nchan = refs.shape
    blocks = torch.empty(2, nsrc, nchan, count, n_fft, dtype=torch.float64, device=device)
    blocks[..., block:] = 0
    last_head = torch.zeros(2, nsrc, nchan, 1, halo, dtype=torch.float64, device=device)
    stop = min(start + count * block, nsamples)
    head_stop = min(stop + halo, nsamples)
    full, rest = divmod(stop - start, block)
    for out, head, x in zip(blocks, last_head, (refs, ests), strict=True):
        part = x[:, start:stop].permute(0, 2, 1)
        out[:, :, :full, :block] = part[..., : full * block].unflatten(-1, (full, block))
        if full < count:
            out[:, :, full, :rest] = part[..., full * block :]
            out[:, :, full, rest:block] = 0
            out[:, :, full + 1 :, :block] = 0
        head[..., 0, : head_stop - stop] = x[:, stop:head_stop].permute(0, 2, 1)
    heads = torch.cat([blocks[..., 1:, :halo], last_head], dim=-2)
    nrows = 2 * nsrc * nchan
    return blocks.view(nrows, count, n_fft), heads.reshape(nrows, count, halo)


def _spectra(blocks: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Frequency-major spectra: ``(signals, blocks, n)`` -> ``(freq, signals, blocks)``."""
    return _rfft(blocks.permute(2, 0, 1), n_fft, dim=0)


def _add_cross_spectra(
    acc: torch.Tensor | None, lead: torch.Tensor, base: torch.Tensor
) -> torch.Tensor:
    """``acc + sum_b lead[:, u, b] * conj(base[:, v, b])`` as ``(freq, U, V)``.

    ``lead``: ``(freq, U, blocks)``; ``base``: ``(freq, V, blocks)``, from :func:`_spectra`.
    """
    # One (U, blocks) @ (blocks, V) matmul per frequency; bmm takes a transposed
    # operand as it is, but copies a conjugated one frequency at a time.
    base = torch.conj_physical(base).mT
    if acc is None:
        return lead @ base
    return acc.baddbmm_(lead, base)


# ---------------------------------------------------------------- frames


def _framewise_metrics(
    refs: torch.Tensor,
    ests: torch.Tensor,
    cross: torch.Tensor,
    spat: torch.Tensor,
    win: int,
    hop: int,
    block_frames: int | None,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Project each frame with the fixed filters and measure museval's four ratios."""
    nsamples = refs.shape[1]
    filters_len = spat.shape[-2]
    frame_len = win if win < nsamples else nsamples
    nframes = museval_metrics.Framing(win, hop, nsamples).nwin
    n_fft = scipy.fft.next_fast_len(frame_len + filters_len - 1, real=True)
    spat_f, interf_f = _filter_spectra(cross, spat, n_fft)
    if block_frames is None:
        block_frames = _CPU_BLOCK_FRAMES if device.type == "cpu" else _DEVICE_BLOCK_FRAMES
    blocks = []
    for first in range(0, nframes, block_frames):
        count = min(block_frames, nframes - first)
        start, stop = first * hop, (first + count - 1) * hop + frame_len
        ref_frames = _frames(refs, start, stop, frame_len, hop, n_fft, device)
        est_frames = _frames(ests, start, stop, frame_len, hop, n_fft, device)
        ratios = _frame_ratios(ref_frames, est_frames, spat_f, interf_f)
        silent = _silent(ref_frames) | _silent(est_frames)
        blocks.append(ratios.masked_fill(silent, float("nan")))
    sdr, isr, sir, sar = torch.cat(blocks, dim=-1).cpu().numpy()
    return sdr, isr, sir, sar


def _filter_spectra(
    cross: torch.Tensor, spat: torch.Tensor, n_fft: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Spectra of the filters that give museval's error components directly.

    ``e_spat = P_j - s`` uses ``spat - identity``; ``e_interf = P_all - P_j``
    uses ``cross`` with ``spat`` taken from the own-source block, so a zero
    interference is exactly zero (museval then reports ``inf``).

    Returns:
        ``spat_f``: ``(sources, channels_in, channels_out, 1, freq)``;
        ``interf_f``: ``(sources_ref, channels_in, sources_est, channels_out, 1, freq)``,
        the singleton broadcasting over frames.
    """
    nsrc, nchan, _, _ = spat.shape
    eye = torch.eye(nchan, dtype=spat.dtype, device=spat.device)
    spat_err = spat.clone()
    spat_err[:, :, 0, :] -= eye
    own = torch.arange(nsrc, device=spat.device)
    interf = cross.clone()
    interf[own, own] -= spat
    spat_f = _rfft(spat_err, n_fft, dim=2).permute(0, 1, 3, 2).unsqueeze(-2)
    interf_f = _rfft(interf, n_fft, dim=3).permute(1, 2, 0, 4, 3).unsqueeze(-2)
    return spat_f.contiguous(), interf_f.contiguous()


def _frames(
    x: torch.Tensor,
    start: int,
    stop: int,
    frame_len: int,
    hop: int,
    n_fft: int,
    device: torch.device,
) -> torch.Tensor:
    """Frames of samples ``[start, stop)`` of ``x: (sources, samples, channels)``.

    Returns:
        ``(sources, channels, frames, n_fft)`` float64, each frame zero-padded
        to ``n_fft`` (the zeros change neither energies nor silence).
    """
    frames = x[:, start:stop].permute(0, 2, 1).unfold(-1, frame_len, hop)
    out = torch.empty(frames.shape[:-1] + (n_fft,), dtype=torch.float64, device=device)
    out[..., frame_len:] = 0
    out[..., :frame_len] = frames
    return out


def _silent(frames: torch.Tensor) -> torch.Tensor:
    """museval's ``_any_source_silent`` per frame: ``(frames,)``.

    Channels are summed in float64; for float32 stereo input this is exactly
    museval's float32 test, since ``a + b == 0`` in either precision iff ``a == -b``.
    """
    return (frames.sum(1) == 0).all(-1).any(0)


def _frame_ratios(
    refs: torch.Tensor,
    ests: torch.Tensor,
    spat_f: torch.Tensor,
    interf_f: torch.Tensor,
) -> torch.Tensor:
    """SDR, ISR, SIR, SAR of a batch of frames, ``(4, sources, frames)``.

    ``refs``, ``ests``: ``(sources, channels, frames, n_fft)`` float64, zero-padded
    frames (``n_fft >= frame_len + filters_len - 1``: circular convolution is linear).
    """
    nsrc, nchan, _, n_fft = refs.shape
    ref_f = _rfft(refs)
    est_f = _rfft(ests)
    # parts: museval's e_spat, s_true + e_spat, e_interf, s_true + e_spat + e_interf
    # and e_artif, each (sources, channels, frames, freq).
    parts = torch.empty((5,) + ref_f.shape, dtype=ref_f.dtype, device=ref_f.device)
    e_spat, true_spat, e_interf, projection, e_artif = parts
    torch.mul(ref_f[:, 0, None], spat_f[:, 0], out=e_spat)
    for c in range(1, nchan):
        e_spat.addcmul_(ref_f[:, c, None], spat_f[:, c])
    torch.mul(ref_f[0, 0], interf_f[0, 0], out=e_interf)
    for i, c in list(itertools.product(range(nsrc), range(nchan)))[1:]:
        e_interf.addcmul_(ref_f[i, c], interf_f[i, c])
    torch.add(ref_f, e_spat, out=true_spat)
    torch.add(true_spat, e_interf, out=projection)
    torch.sub(est_f, projection, out=e_artif)
    energies = _spectral_energy(parts, n_fft)
    energy_true = refs.square().sum((1, 3))
    ratios = [
        (energy_true, (ests - refs).square().sum((1, 3))),
        (energy_true, energies[0]),
        (energies[1], energies[2]),
        (energies[3], energies[4]),
    ]
    return torch.stack([_safe_db(num, den) for num, den in ratios])


def _spectral_energy(spectra: torch.Tensor, n_fft: int) -> torch.Tensor:
    """Time-domain energy (Parseval) of signals given by their ``rfft``, summed over channels.

    ``spectra``: ``(..., channels, frames, freq)`` -> ``(..., frames)``.
    """
    # Every bin but DC (and Nyquist for even n_fft) stands for two conjugate bins.
    total = 2 * torch.linalg.vector_norm(torch.view_as_real(spectra).flatten(-2), dim=-1).square()
    total -= spectra[..., 0].abs().square()
    if n_fft % 2 == 0:
        total -= spectra[..., -1].abs().square()
    return total.sum(-2) / n_fft


def _rfft(x: torch.Tensor, n: int | None = None, dim: int = -1) -> torch.Tensor:
    """``torch.fft.rfft``, through scipy (pocketfft) on the CPU, where it is
    faster than torch's for these sizes and returns a C-contiguous result for
    any ``dim``."""
    if x.device.type != "cpu":
        return torch.fft.rfft(x, n, dim=dim)
    return torch.from_numpy(scipy.fft.rfft(x.numpy(), n, axis=dim))


def _safe_db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """museval's ``_safe_db``: ``inf`` where the denominator is exactly zero."""
    return torch.where(den == 0, torch.inf, 10 * torch.log10(num / den))
