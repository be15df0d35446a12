"""Both U-Net families against their peers, on the CPU, one thread, A/B alternated.

- 2-D: the ``spleeter-4stems`` SpecUNet (depth 6) against a plain PyTorch port
  of Spleeter (:mod:`ablation.benchmarks.spleeter_port`) on the same mixture,
  whose STFT is 1024 kept bins x 256 frames, end to end: waveform in, four
  waveform estimates out.
- 1-D: the ``wave-unet-m6`` WaveUNet (depth 6) against f90's
  Wave-U-Net-Pytorch (``--f90 PATH``, a clone of
  github.com/f90/Wave-U-Net-Pytorch; imported from there, never copied) of
  the same size: the same widths (24 more per level), levels and stride 2,
  one net for the four sources, its defaults otherwise (kernel 5, group norm,
  fixed sinc resampling); times per second of estimated audio.

Each also runs with its fast layouts switched off (``fast_layout = False``),
which shows what they gain. A training step is forward, MSE on the
waveforms, backward and an Adam step; inference is a forward pass in
evaluation mode without gradients. Each round times every contender once, in
turn, so a change of load on a shared machine hits all of them alike; the
table shows medians and the ratio to the peer (below 1: faster than the peer).
Times are CPU seconds of this process: on one thread that is the work done,
which other processes on a shared machine disturb far less than wall time.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ablation.benchmarks.spleeter_port import SpleeterPort
from ablation.nets import build
from ablation.nets.blocks import fast_layout_classes

BATCH = 2
SOURCES = 4
CHANNELS = 2
HOP = 1024
DEPTH = 6


def main(quick: bool = False, f90: str | None = None) -> None:
    """Print the 2-D comparison, and the 1-D one when ``f90`` names a clone."""
    rounds = 2 if quick else 5
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        # Also with --quick: at fewer frames the deepest levels are a frame or two
        # wide, where other kernels win; the main grid's depth-6 windows are 768 frames.
        frames = 256
        print(f"CPU, one thread, batch {BATCH}, {rounds} alternated rounds (median CPU seconds)")
        _compare_2d(frames, rounds)
        if f90 is None:
            print(
                "1-D: pass --f90 PATH (a clone of f90/Wave-U-Net-Pytorch) to compare the WaveUNet"
            )
        else:
            _compare_1d(Path(f90), 1.0 if quick else 2.0, rounds)
    finally:
        torch.set_num_threads(threads)


def _compare_2d(frames: int, rounds: int) -> None:
    torch.manual_seed(0)
    mixture = 0.1 * torch.randn(BATCH, CHANNELS, (frames - 1) * HOP)
    stems = 0.1 * torch.randn(BATCH, SOURCES, CHANNELS, mixture.shape[-1])
    ours, peer = build("spleeter-4stems", depth=DEPTH), SpleeterPort(depth=DEPTH)
    contenders = {
        "SpecUNet spleeter-4stems": (ours, True),
        "  same, fast layouts off": (ours, False),
        "Spleeter port (plain PyTorch)": (peer, True),
    }
    print(f"\n2-D, depth {DEPTH}: 1024 bins x {frames} frames, {mixture.shape[-1]} samples")
    _report(contenders, lambda net: net(mixture), stems, rounds, per=1.0, unit="s/call")


def _compare_1d(path: Path, seconds: float, rounds: int) -> None:
    torch.manual_seed(0)
    ours = build("wave-unet-m6", depth=DEPTH)
    region = int(seconds * 44100)
    peer = _f90_net(path, ours, region)
    ours_in, ours_out = ours.valid_lengths(region)
    ours_mixture = 0.1 * torch.randn(BATCH, CHANNELS, ours_in)
    peer_mixture = 0.1 * torch.randn(BATCH, CHANNELS, peer.input_size)

    def forward(net: nn.Module) -> torch.Tensor:
        if net is ours:
            return net(ours_mixture)[..., :region]
        estimates = net(peer_mixture)
        return torch.stack([estimates[name] for name in peer.instruments], 1)[..., :region]

    print(
        f"\n1-D, depth {DEPTH}: {seconds:g} s estimated per item "
        f"(WaveUNet {ours_in} -> {ours_out} samples, f90 {peer.input_size} -> "
        f"{peer.output_size}); seconds per second of audio"
    )
    stems = 0.1 * torch.randn(BATCH, SOURCES, CHANNELS, region)
    contenders = {
        "WaveUNet wave-unet-m6": (ours, True),
        "  same, fast layouts off": (ours, False),
        "f90 Wave-U-Net-Pytorch": (peer, True),
    }
    _report(contenders, forward, stems, rounds, per=seconds, unit="s/s audio")


def _f90_net(path: Path, ours: nn.Module, region: int) -> nn.Module:
    if not (path / "model" / "waveunet.py").is_file():
        raise SystemExit(
            f"--f90 {path}: expected a clone of github.com/f90/Wave-U-Net-Pytorch "
            "(with model/waveunet.py), found none; git clone it and pass its folder."
        )
    sys.path.insert(0, str(path))
    try:
        from model.waveunet import Waveunet
    finally:
        sys.path.remove(str(path))
    widths = [ours.config["filters"] * level for level in range(1, DEPTH + 2)]
    return Waveunet(
        CHANNELS,
        widths,
        CHANNELS,
        ["bass", "drums", "other", "vocals"],
        kernel_size=5,
        target_output_size=region,
        conv_type="gn",
        res="fixed",
        separate=False,
        strides=2,
    )


def _report(contenders, forward, stems, rounds: int, per: float, unit: str) -> None:
    """Time training steps and inference of every contender, alternated, and print them."""
    steps = {name: train_step(net, forward, stems) for name, (net, _) in contenders.items()}
    infers = {name: _inference(net, forward) for name, (net, _) in contenders.items()}
    times = {(kind, name): [] for kind in ("train", "infer") for name in contenders}
    for _ in range(rounds + 1):  # the first round warms up
        for kind, calls in (("train", steps), ("infer", infers)):
            for name, (net, fast) in contenders.items():
                with fast_layouts(net, fast):
                    start = time.process_time()
                    calls[name]()
                    times[kind, name].append((time.process_time() - start) / per)
    peer = list(contenders)[-1]
    print(f"  {'':<32} {'train ' + unit:>16} {'x peer':>7} {'infer ' + unit:>16} {'x peer':>7}")
    for name in contenders:
        row = []
        for kind in ("train", "infer"):
            median = statistics.median(times[kind, name][1:])
            row.append(f"{median:>16.3f} {median / statistics.median(times[kind, peer][1:]):>7.2f}")
        print(f"  {name:<32} {' '.join(row)}", flush=True)


def train_step(net: nn.Module, forward, stems: torch.Tensor) -> Callable[[], None]:
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)

    def step() -> None:
        net.train()
        optimizer.zero_grad(set_to_none=True)
        F.mse_loss(forward(net), stems).backward()
        optimizer.step()

    return step


def _inference(net: nn.Module, forward) -> Callable[[], None]:
    def infer() -> None:
        net.eval()
        with torch.no_grad():
            forward(net)

    return infer


@contextmanager
def fast_layouts(net: nn.Module, enabled: bool):
    """Run ``net`` with its layers' fast layouts on or off, then restore them."""
    classes = fast_layout_classes(net)
    before = {cls: cls.fast_layout for cls in classes}
    for cls in classes:
        cls.fast_layout = enabled
    try:
        yield
    finally:
        for cls, value in before.items():
            cls.fast_layout = value
