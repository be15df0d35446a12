"""Batch-level augmentations applied on the device, to stems ``(batch, sources,
channels, time)``, before the mixture is formed. Each draws from an explicit
generator so augmentation is seeded from the config (DESIGN.md, style rule 7)."""

from __future__ import annotations

import torch
from torch import nn


def _draw(stems: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniform number per (item, source), shaped to broadcast over channels and time."""
    shape = (*stems.shape[:2], 1, 1)
    return torch.rand(shape, generator=generator, device=stems.device, dtype=stems.dtype)


class RandomGain(nn.Module):
    """Scale every source of every item by a gain drawn uniformly in [low, high]."""

    def __init__(self, low: float = 0.25, high: float = 1.25):
        super().__init__()
        if not 0 <= low <= high:
            raise ValueError(f"gain range must satisfy 0 <= low <= high, got [{low}, {high}]")
        self.low, self.high = low, high

    def forward(self, stems: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """stems: (batch, sources, channels, time) -> same shape."""
        return stems * (self.low + (self.high - self.low) * _draw(stems, generator))


class ChannelSwap(nn.Module):
    """Swap left and right of each source with probability 1/2 (stereo only)."""

    def forward(self, stems: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """stems: (batch, sources, channels, time) -> same shape."""
        if stems.shape[2] != 2:
            return stems
        swap = _draw(stems, generator) < 0.5
        return torch.where(swap, stems.flip(2), stems)


class SignFlip(nn.Module):
    """Negate each source with probability 1/2."""

    def forward(self, stems: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """stems: (batch, sources, channels, time) -> same shape."""
        return torch.where(_draw(stems, generator) < 0.5, -stems, stems)


class Augment(nn.Module):
    """The training augmentation chain with its own seeded generator per device."""

    def __init__(self, transforms: list[nn.Module], seed: int = 0):
        super().__init__()
        self.transforms = nn.ModuleList(transforms)
        self.seed = seed
        self._generators: dict[torch.device, torch.Generator] = {}

    def _generator(self, device: torch.device) -> torch.Generator:
        if device not in self._generators:
            self._generators[device] = torch.Generator(device=device).manual_seed(self.seed)
        return self._generators[device]

    def forward(self, stems: torch.Tensor) -> torch.Tensor:
        """stems: (batch, sources, channels, time) -> same shape."""
        generator = self._generator(stems.device)
        for transform in self.transforms:
            stems = transform(stems, generator)
        return stems
