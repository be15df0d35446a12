"""The 2-D nets' input normalizations: per channel and frequency bin, after ``log1p``."""

from typing import Literal

import torch
from einops import rearrange
from torch import Tensor, nn

InputNorm = Literal["batchnorm", "affine", "none"]


class BinAffine(nn.Module):
    """Learned scale and shift per channel and frequency bin (open-unmix style);
    starts as the identity."""

    def __init__(self, features: int, bins: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(features, bins, 1))
        self.shift = nn.Parameter(torch.zeros(features, bins, 1))

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, features, bins, frames)``, same shape out."""
        return x * self.scale + self.shift


class BinBatchNorm(nn.Module):
    """Batch norm with one feature per channel and frequency bin: statistics
    over batch and frames, kept as running buffers for evaluation."""

    def __init__(self, features: int, bins: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(features * bins)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, features, bins, frames)``, same shape out."""
        features = x.shape[1]
        flat = self.norm(rearrange(x, "b c f n -> b (c f) n"))
        return rearrange(flat, "b (c f) n -> b c f n", c=features)


def bin_norm(kind: InputNorm, features: int, bins: int) -> nn.Module:
    """The 2-D nets' input normalization ``kind`` for ``features`` channels of ``bins`` bins."""
    if kind == "batchnorm":
        return BinBatchNorm(features, bins)
    if kind == "affine":
        return BinAffine(features, bins)
    return nn.Identity()
