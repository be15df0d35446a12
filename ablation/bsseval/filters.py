"""museval's time-invariant distortion filters: lagged correlations of the whole
signals (accumulated block by block in the frequency domain) and their normal
equations (:mod:`ablation.bsseval.toeplitz`)."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.fft
import torch

from ablation.bsseval import fft
from ablation.bsseval.toeplitz import block_levinson, regularised, verified

# FFT length of the correlation blocks (each covers n_fft - filters_len + 1
# samples), at least 4 * filters_len.
CORR_FFT = 2**14
# Correlation blocks transformed at once.
CORR_GROUP = 8


def distortion_filters(
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
    corr = lagged_correlations(refs, ests, filters_len, device).cpu().numpy()
    # lags[k][a, b] = sum_t x_a[t + k] x_b[t]: museval's G in (lag, signal) order.
    lags = corr[:n_ref].transpose(2, 0, 1)
    # rhs[k][a, e] = sum_t x_a[t - k] y_e[t]: museval's D.
    rhs = corr[n_ref:].transpose(2, 1, 0)
    own_lags, own_rhs = _own_blocks(lags, nsrc), _own_blocks(rhs, nsrc)
    distinct = _distinct_channels(refs)
    if distinct.all():
        # One Levinson run for both: the own-source systems side by side as one
        # block-diagonal system of the same size as the full one.
        solutions, solved = block_levinson(
            regularised(np.stack([lags, _block_diagonal(own_lags)])),
            np.stack([rhs, _block_diagonal(own_rhs)]),
        )
        cross = verified(lags[None], rhs[None], solutions[:1], solved[:1])[0]
        spat = verified(
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
    solution, solved = block_levinson(regularised(sub_lags[None]), sub_rhs[None])
    out = np.zeros(rhs.shape)
    out[:, keep] = verified(sub_lags[None], sub_rhs[None], solution, solved)[0]
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


def lagged_correlations(
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
    n_fft = max(CORR_FFT, scipy.fft.next_fast_len(4 * filters_len, real=True))
    # block + halo <= n_fft, so the circular correlation is the linear one.
    block = n_fft - halo
    n_edge = scipy.fft.next_fast_len(2 * halo, real=True) if halo else 0
    nblocks = -(-refs.shape[1] // block)
    inner = edge = None
    for first in range(0, nblocks, CORR_GROUP):
        count = min(CORR_GROUP, nblocks - first)
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
    return fft.rfft(blocks.permute(2, 0, 1), n_fft, dim=0)


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
