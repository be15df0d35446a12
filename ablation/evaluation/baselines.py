"""Baselines that separate nothing or know the answer: the mixture (the floor), the best
constant gain (the floor of a net that only turns the volume), the ideal ratio mask (the
ceiling of a masking net)."""

from __future__ import annotations

import numpy as np
import torch

from ablation.constants import EVALUATION_BASELINES

BASELINES = EVALUATION_BASELINES
# The 2-D family's STFT (Spleeter's): the oracle mask on it is the ceiling of a masking net.
IRM_N_FFT = 4096
IRM_HOP = 1024


def oracle_irm(mixture: np.ndarray, refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Ideal ratio mask estimates: ``|S_j| / sum_k |S_k|`` applied to the mixture STFT.

    Args:
        mixture: ``(samples, channels)``.
        refs: target name -> ``(samples, channels)``; the targets should add up
            to the mixture.

    Returns:
        target name -> ``(samples, channels)`` float64.
    """
    from ablation.spectral import ISTFT, STFT

    stft, istft = STFT(IRM_N_FFT, IRM_HOP), ISTFT(IRM_N_FFT, IRM_HOP)

    def spectrum(audio: np.ndarray) -> torch.Tensor:
        return stft(torch.as_tensor(audio.T, dtype=torch.float32))  # (channels, bins, frames)

    with torch.inference_mode():
        mix = spectrum(mixture)
        magnitudes = {name: spectrum(audio).abs() for name, audio in refs.items()}
        # Bins where every source is silent get a zero mask instead of 0 / 0.
        total = sum(magnitudes.values()).clamp_min(torch.finfo(torch.float32).tiny)
        return {
            name: istft(mix * (mag / total), length=len(mixture)).T.double().numpy()
            for name, mag in magnitudes.items()
        }


def oracle_gain(mixture: np.ndarray, refs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Best constant gain per target: ``(<s_j, x> / <x, x>) x``, the least-squares scaling
    of the mixture ``x``. SDR is not scale-invariant, so a net that only turns the volume
    down reaches this floor without separating anything.

    Args:
        mixture: ``(samples, channels)``.
        refs: target name -> ``(samples, channels)``.

    Returns:
        target name -> ``(samples, channels)``.
    """
    energy = max(float(np.sum(mixture * mixture)), np.finfo(float).tiny)
    return {name: float(np.sum(ref * mixture)) / energy * mixture for name, ref in refs.items()}
