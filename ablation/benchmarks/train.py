"""Training throughput of the 1-D and 2-D U-Nets at depths 2, 4 and 6.

One training step is forward + MSE loss + backward + Adam step on random
stereo 4-stem segments (batch 4). Both families use their preset's filters
(``wave-unet-m6``: 24 more per level; ``spectrogram-channels``: 16 doubling)
and are timed side by side at each depth; the ratio is 2-D / 1-D segments/s.
"""

import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ablation.constants import SAMPLE_RATE
from ablation.nets import build

DEPTHS = (2, 4, 6)
FAMILY_PRESETS = {"1d": "wave-unet-m6", "2d": "spectrogram-channels"}
BATCH = 4
SOURCES = 4
CHANNELS = 2


def main(quick: bool = False) -> None:
    """Print segments/s, parameters and MACs/s per family and depth, and the ratio."""
    seconds, warmup, steps = (1.0, 1, 3) if quick else (3.0, 3, 10)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    print(
        f"device {device}, threads {torch.get_num_threads()}, batch {BATCH} x "
        f"{SOURCES} stems x {CHANNELS} ch x {seconds:g} s, {steps} timed steps after "
        f"{warmup} warm-up; presets {FAMILY_PRESETS}"
    )
    print(f"{'depth':>5} {'family':>6} {'segments/s':>11} {'params':>10} {'GMAC/s audio':>13}")
    for depth in DEPTHS:
        rates = {}
        for family, preset in FAMILY_PRESETS.items():
            net = build(preset, depth=depth).to(device)
            rates[family] = segments_per_second(net, seconds, warmup, steps, device)
            print(
                f"{depth:>5} {family:>6} {rates[family]:>11.2f} {net.num_parameters():>10,} "
                f"{net.macs_per_second(SAMPLE_RATE) / 1e9:>13.2f}",
                flush=True,
            )
        print(f"{depth:>5} {'2d/1d':>6} {rates['2d'] / rates['1d']:>11.2f}", flush=True)


def segments_per_second(
    net: nn.Module,
    seconds: float,
    warmup: int,
    steps: int,
    device: torch.device,
    after_step: Callable[[], None] | None = None,
) -> float:
    """Training segments per second of ``net`` on random data; ``after_step`` runs after
    each optimizer step, inside the timing (e.g. an EMA update)."""
    stems = 0.1 * torch.randn(BATCH, SOURCES, CHANNELS, int(seconds * SAMPLE_RATE), device=device)
    mixture = stems.sum(dim=1)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    net.train()
    for step in range(warmup + steps):
        if step == warmup:
            _synchronize(device)
            start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = F.mse_loss(net(mixture), stems)
        loss.backward()
        optimizer.step()
        if after_step is not None:
            after_step()
    _synchronize(device)
    if not torch.isfinite(loss):
        raise RuntimeError(f"training loss became {loss.item()} for {net.describe()}")
    return steps * BATCH / (time.perf_counter() - start)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
