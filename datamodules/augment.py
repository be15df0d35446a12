"""Batch-level augmentations applied on the device, to stems ``(batch, sources,
channels, time)``, before the mixture is formed.

Their random numbers are drawn per item on the CPU from the item's stream position
(:func:`datamodules.datasets.item_rng`), then applied on the device: the draws are
the same on a CPU and a GPU, with any number of workers, after a resume, and each
DDP rank (which trains on its own positions) gets its own. Gains, swaps and sign
flips are exact in float32, so the augmented bytes do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from datamodules.datasets import AUGMENT, item_rng


class RandomGain(nn.Module):
    """Scale every source of every item by a gain drawn uniformly in [low, high]."""

    def __init__(self, low: float = 0.25, high: float = 1.25):
        super().__init__()
        if not 0 <= low <= high:
            raise ValueError(f"gain range must satisfy 0 <= low <= high, got [{low}, {high}]")
        self.low, self.high = low, high

    def draw(self, rng: np.random.Generator, sources: int) -> np.ndarray:
        """One gain per source."""
        return (self.low + (self.high - self.low) * rng.random(sources)).astype(np.float32)

    def forward(self, stems: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """stems: (batch, sources, channels, time), draws: (batch, sources) -> same shape."""
        return stems * draws[..., None, None]


class ChannelSwap(nn.Module):
    """Swap left and right of each source with probability 1/2 (stereo only)."""

    def draw(self, rng: np.random.Generator, sources: int) -> np.ndarray:
        """1 where a source is swapped."""
        return (rng.random(sources) < 0.5).astype(np.float32)

    def forward(self, stems: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """stems: (batch, sources, channels, time), draws: (batch, sources) -> same shape."""
        if stems.shape[2] != 2:
            return stems
        return torch.where(draws[..., None, None] > 0, stems.flip(2), stems)


class SignFlip(nn.Module):
    """Negate each source with probability 1/2."""

    def draw(self, rng: np.random.Generator, sources: int) -> np.ndarray:
        """1 where a source is negated."""
        return (rng.random(sources) < 0.5).astype(np.float32)

    def forward(self, stems: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
        """stems: (batch, sources, channels, time), draws: (batch, sources) -> same shape."""
        return torch.where(draws[..., None, None] > 0, -stems, stems)


class Augment(nn.Module):
    """The training augmentation chain, its draws a function of (seed, position)."""

    def __init__(self, transforms: list[nn.Module], seed: int = 0):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.seed = seed

    def draws(self, positions: Sequence[int], sources: int) -> list[torch.Tensor]:
        """Per transform, ``(batch, sources)`` parameters of the items at ``positions``."""
        per_item = []
        for position in positions:
            rng = item_rng(self.seed, int(position), AUGMENT)
            per_item.append([t.draw(rng, sources) for t in self.transforms])
        return [
            torch.from_numpy(np.stack([item[i] for item in per_item]))
            for i in range(len(self.transforms))
        ]

    def forward(self, stems: torch.Tensor, positions: Sequence[int]) -> torch.Tensor:
        """stems: (batch, sources, channels, time) of the items at stream ``positions``
        -> same shape."""
        draws = self.draws(positions, stems.shape[1])
        for transform, values in zip(self.transforms, draws, strict=True):
            stems = transform(stems, values.to(stems.device, non_blocking=True))
        return stems
