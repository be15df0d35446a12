"""The estimates of one track: a checkpoint separates the mixture (overlap-add by
:func:`ablation.separate.separate`, at the net's rate), a baseline builds them, and the
targets a scoring group needs beyond them are derived."""

from __future__ import annotations

import numpy as np
import torch

from ablation.constants import ACCOMPANIMENT
from ablation.evaluation.baselines import oracle_gain, oracle_irm
from ablation.evaluation.cache import cached
from ablation.evaluation.plan import Plan
from ablation.evaluation.tracks import Track, references
from ablation.tracks import resample


def load_net(ckpt: str, device: str) -> torch.nn.Module:
    """The net of ``ckpt`` (:func:`ablation.checkpoint.load_net`), loaded once a process:
    a worker scores many tracks with the same net."""
    from ablation import checkpoint

    return cached(("separator", ckpt, device), lambda: checkpoint.load_net(ckpt, device))


def separate_track(plan: Plan, mixture: np.ndarray) -> dict[str, np.ndarray]:
    """Separate ``mixture`` ``(samples, channels)`` at the dataset's rate with the plan's
    checkpoint; return ``{source: (samples, channels)}`` float64 at the dataset's rate."""
    from ablation.separate import separate_shifted

    net = load_net(plan.ckpt, plan.device)
    with torch.inference_mode():
        mix = torch.as_tensor(mixture.T, dtype=torch.float32)
        resampled = resample(mix, plan.sample_rate, plan.net_rate, None)
        estimates = separate_shifted(
            net, resampled, plan.segment_samples, plan.shifts, device=plan.device
        )
        estimates = resample(estimates, plan.net_rate, plan.sample_rate, mix.shape[-1])
    assert estimates.shape == (len(plan.sources), *mix.shape), (estimates.shape, mix.shape)
    return {name: estimates[i].T.double().cpu().numpy() for i, name in enumerate(plan.sources)}


def estimate(plan: Plan, track: Track, mixture: np.ndarray) -> dict[str, np.ndarray]:
    """The estimator's output ``{target: (samples, channels)}`` for every target a
    scoring group needs.

    The mixture baseline gives the mixture for every target, accompaniment
    included. The oracles (gain, ratio mask) estimate the targets of the first
    group from the references; the checkpoint separates the mixture. A target
    they do not give is derived: a four-stem accompaniment is drums + bass +
    other, a single source's complement is the mixture minus its estimate.
    """
    needed = [name for group in plan.groups for name in group.together]
    if plan.baseline == "mixture":
        return dict.fromkeys(needed, mixture)
    if plan.baseline in ("gain", "oracle-irm"):
        refs = references(track, plan.groups[0].together, plan.sources)
        oracle = oracle_gain if plan.baseline == "gain" else oracle_irm
        estimates = oracle(mixture, refs)
    else:
        estimates = separate_track(plan, mixture)
    for name in dict.fromkeys(needed):
        if name in estimates:
            continue
        if name == "accompaniment" and all(s in estimates for s in ACCOMPANIMENT):
            estimates[name] = sum(estimates[s] for s in ACCOMPANIMENT)
        else:
            estimates[name] = mixture - estimates[plan.sources[0]]
    return estimates
