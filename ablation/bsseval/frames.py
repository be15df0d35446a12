"""Per frame: project references and estimates with the fixed filters in the
frequency domain and measure museval's SDR, ISR, SIR and SAR."""

from __future__ import annotations

import itertools

import numpy as np
import scipy.fft
import torch
from museval import metrics as museval_metrics

from ablation.bsseval import fft

# Frames per batch: few on the CPU to keep the spectra in cache, more on
# accelerators to fill them (about 1 GB of buffers for 4 stereo sources).
_CPU_BLOCK_FRAMES = 2
_DEVICE_BLOCK_FRAMES = 32


def framewise_metrics(
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
    spat_f = fft.rfft(spat_err, n_fft, dim=2).permute(0, 1, 3, 2).unsqueeze(-2)
    interf_f = fft.rfft(interf, n_fft, dim=3).permute(1, 2, 0, 4, 3).unsqueeze(-2)
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
    ref_f = fft.rfft(refs)
    est_f = fft.rfft(ests)
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


def _safe_db(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """museval's ``_safe_db``: ``inf`` where the denominator is exactly zero."""
    return torch.where(den == 0, torch.inf, 10 * torch.log10(num / den))
