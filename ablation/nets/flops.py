"""Compute measured, not estimated: the FLOPs of a training step and of separation.

Counted with torch's own ``FlopCounterMode`` on a copy of the net on the ``meta``
device: shapes only, no arithmetic, no memory, and no change to the net, its
random state or its batch-norm statistics. On ``meta`` every layer takes its plain
path (the CPU-only fast layouts fold some work away), so the count is the net's
arithmetic, the same on every machine. As ``FlopCounterMode`` counts them: matrix
products and convolutions, forward and backward; FFTs and elementwise work are not
counted (they are a small share of both families' cost).
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

META = torch.device("meta")


def _meta_copy(net: nn.Module) -> nn.Module:
    clone = copy.deepcopy(net).to(META)
    clone.train(net.training)
    return clone


def training_step_flops(
    net: nn.Module, batch: int, channels: int, window_samples: int, context_samples: int
) -> int:
    """FLOPs of one training step's forward and backward pass on a batch of ``batch``
    mixtures ``(batch, channels, window_samples)`` estimating the loss region between
    ``context_samples`` of context on each side, in training mode (dropout on)."""
    clone = _meta_copy(net)
    clone.train()
    mixture = torch.empty(batch, channels, window_samples, device=META)
    with FlopCounterMode(display=False) as counter:
        estimates = clone(mixture, context_samples)
        estimates.float().square().mean().backward()
    return int(counter.get_total_flops())


def inference_flops_per_second(
    net: nn.Module, channels: int, sample_rate: int, segment_samples: int, context_samples: int
) -> float:
    """FLOPs of separating one second of audio: one eval-mode forward pass over a
    segment with its context, divided by the segment's duration."""
    clone = _meta_copy(net)
    clone.eval()
    mixture = torch.empty(1, channels, segment_samples + 2 * context_samples, device=META)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        clone(mixture, context_samples)
    return counter.get_total_flops() / (segment_samples / sample_rate)
