"""museval against ``ablation.bsseval`` on one CPU core: seconds, ratio, agreement.

Both score the same 4-source stereo signal in museval's default v4 mode
(1 s frames, 512-tap filters). Everything runs on one thread: torch through
``torch.set_num_threads(1)``, numpy/scipy BLAS and OpenMP pools through
threadpoolctl, so the ratio compares single-core implementations.
"""

from __future__ import annotations

import time

import numpy as np
import torch

RATE = 44100
# Metrics above this many dB are ratios of an energy to float64 rounding noise
# (e.g. an estimate equal to a reference), which no two implementations share.
RESOLVED_DB = 100.0


def main(quick: bool = False) -> None:
    """Time museval and the torch implementation on 30 s (10 s if ``quick``) of audio."""
    import museval
    from threadpoolctl import threadpool_limits

    from ablation.bsseval import evaluate

    seconds = 10 if quick else 30
    references, estimates = synthetic_sources(seconds)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            evaluate(references[:, : 5 * RATE], estimates[:, : 5 * RATE])  # warm-up
            # Median of three for the fast one, so one noisy run on a shared
            # machine does not decide the ratio; museval's ~20 s average out.
            runs = [_timed(evaluate, references, estimates) for _ in range(3)]
            ours = runs[0][0]
            ours_s, ours_wall = np.median([times for _, times in runs], axis=0)
            theirs, (theirs_s, theirs_wall) = _timed(museval.evaluate, references, estimates)
    finally:
        torch.set_num_threads(threads)

    ours, theirs = np.array(ours), np.array(theirs)
    same_nan = bool(np.array_equal(np.isnan(ours), np.isnan(theirs)))
    resolved = np.isfinite(theirs) & (np.abs(theirs) < RESOLVED_DB)
    max_diff = float(np.abs(ours - theirs)[resolved].max())
    print(
        f"BSS Eval v4, {seconds} s of 4-source stereo audio at {RATE} Hz, "
        f"{theirs.shape[-1]} frames; one CPU thread (torch.set_num_threads(1), "
        "threadpoolctl limits=1 for BLAS/OpenMP)"
    )
    print(f"  museval.evaluate          {theirs_s:8.2f} s CPU {theirs_wall:8.2f} s wall")
    print(
        f"  ablation.bsseval.evaluate {ours_s:8.2f} s CPU {ours_wall:8.2f} s wall"
        " (median of 3 runs)"
    )
    print(f"  speed-up                  {theirs_s / ours_s:8.1f} x (CPU time)")
    print(
        f"  max |difference|          {max_diff:.2e} dB over SDR, ISR, SIR, SAR "
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


def _timed(function, *args):
    """Result and (CPU seconds, wall seconds) of one call."""
    cpu, wall = time.process_time(), time.perf_counter()
    result = function(*args)
    return result, (time.process_time() - cpu, time.perf_counter() - wall)
