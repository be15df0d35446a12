"""The real FFT both halves of BSS Eval use (one place, so tests can swap it)."""

from __future__ import annotations

import scipy.fft
import torch


def rfft(x: torch.Tensor, n: int | None = None, dim: int = -1) -> torch.Tensor:
    """``torch.fft.rfft``, through scipy (pocketfft) on the CPU, where it is
    faster than torch's for these sizes and returns a C-contiguous result for
    any ``dim``."""
    if x.device.type != "cpu":
        return torch.fft.rfft(x, n, dim=dim)
    return torch.from_numpy(scipy.fft.rfft(x.numpy(), n, axis=dim))
