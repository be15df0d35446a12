"""``ablation.bsseval.evaluate`` against museval on a loaded machine: seconds, ratios, agreement.

Each scores the same 4-source stereo signal in museval's default v4 mode (1 s
frames, 512-tap filters) while a busy loop runs on every core, as on a shared
server. Three ways to call the torch implementation run alternated, so the
load treats them alike: the plain call (its default, one thread), the same
call keeping torch's and BLAS's process-wide thread counts (``threads=None``,
the default before it chose), and an explicit one-thread setting; then museval.
Times are wall-clock seconds, what the caller waits.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ablation.benchmarks.load import busy_cores

RATE = 44100
# Metrics above this many dB are ratios of an energy to float64 rounding noise
# (e.g. an estimate equal to a reference), which no two implementations share.
RESOLVED_DB = 100.0
ROUNDS = 3


def main(quick: bool = False) -> None:
    """Time the calls on 30 s (10 s if ``quick``) of audio with every core busy."""
    import museval

    from ablation.bsseval import evaluate
    from ablation.threads import limited_threads

    seconds = 10 if quick else 30
    references, estimates = synthetic_sources(seconds)
    calls = {
        "plain call evaluate(refs, ests)": lambda: evaluate(references, estimates),
        "process-wide threads (threads=None)": lambda: evaluate(
            references, estimates, threads=None
        ),
        "explicit one thread": lambda: _on_one_thread(
            evaluate, limited_threads, references, estimates
        ),
    }
    evaluate(references[:, : 5 * RATE], estimates[:, : 5 * RATE])  # warm-up
    with busy_cores() as busy:
        walls = {name: [] for name in calls}
        for _ in range(ROUNDS):
            for name, call in calls.items():
                result, wall = _timed(call)
                walls[name].append(wall)
        theirs, theirs_wall = _timed(lambda: museval.evaluate(references, estimates))

    medians = {name: float(np.median(times)) for name, times in walls.items()}
    best = min(medians.values())
    print(
        f"BSS Eval v4, {seconds} s of 4-source stereo audio at {RATE} Hz, "
        f"{np.shape(theirs)[-1]} frames; {busy} busy-loop processes on "
        f"{busy} cores; torch threads by default {torch.get_num_threads()}; wall seconds, "
        f"median of {ROUNDS} alternated rounds"
    )
    print(f"  {'call':<38} {'seconds':>8} {'x best':>7} {'x museval':>10}")
    for name, wall in medians.items():
        print(f"  {name:<38} {wall:8.2f} {wall / best:7.2f} {theirs_wall / wall:10.1f}")
    print(f"  {'museval.evaluate':<38} {theirs_wall:8.2f} {theirs_wall / best:7.2f} {1:10.1f}")
    _print_agreement(np.array(result), np.array(theirs))


def _on_one_thread(evaluate, limited_threads, references, estimates):
    with limited_threads(1):
        return evaluate(references, estimates, threads=None)


def _print_agreement(ours: np.ndarray, theirs: np.ndarray) -> None:
    same_nan = bool(np.array_equal(np.isnan(ours), np.isnan(theirs)))
    resolved = np.isfinite(theirs) & (np.abs(theirs) < RESOLVED_DB)
    max_diff = float(np.abs(ours - theirs)[resolved].max())
    print(
        f"  max |difference| {max_diff:.2e} dB over SDR, ISR, SIR, SAR "
        f"(values below {RESOLVED_DB:.0f} dB); NaN frames identical: {same_nan}"
    )


def synthetic_sources(seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Four stereo sources and imperfect estimates of them.

    Sources are noise shaped around different bands over a -60 dB floor (like
    recordings, never exactly band-limited), amplitude-modulated, with a
    panned centre and partly independent channels (like stereo recordings,
    never exactly mono); estimates leak 10 % of the other sources and add
    white noise.

    Returns:
        references and estimates, each ``(4, samples, 2)`` float64.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    sources = []
    for centre in (80.0, 300.0, 1200.0, 5000.0):
        band = 1e-3 + np.exp(-0.5 * np.log2((freqs + 1.0) / centre) ** 2)
        centre_side = np.fft.irfft(np.fft.rfft(rng.standard_normal((3, n))) * band, n)
        pan = rng.uniform(0.2, 0.8)
        stereo = np.stack([pan, 1 - pan])[:, None] * centre_side[0] + 0.3 * centre_side[1:]
        envelope = 0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t)
        sources.append(stereo.T * envelope[:, None])
    references = np.stack(sources) / np.abs(np.stack(sources)).max()
    leak = 0.1 * (references.sum(0, keepdims=True) - references)
    estimates = references + leak + 0.05 * rng.standard_normal(references.shape)
    return references, estimates


def _timed(function):
    """Result and wall seconds of one call."""
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start
