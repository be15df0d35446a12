"""A checkpoint's estimates: separated at the net's rate, scored at the tracks'."""

from __future__ import annotations

import numpy as np
import torch
from evaluation_helpers import write_checkpoint


def test_a_net_at_another_rate_separates_at_its_rate_and_is_scored_at_the_tracks(toy1, tmp_path):
    import torchaudio

    from ablation.checkpoint import load_net
    from ablation.evaluation.request import prepare
    from ablation.evaluation.separation import separate_track
    from ablation.evaluation.tracks import load_track
    from ablation.separate import separate

    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", sample_rate=11025)
    plan, names = prepare(str(ckpt), str(toy1), "test", str(tmp_path / "out"), None, "torch", "cpu")
    assert (plan.sample_rate, plan.net_rate, plan.segment) == (44100, 11025, 11025)
    mixture = load_track(plan, names[0]).mixture  # (samples, channels) at 44.1 kHz
    estimates = separate_track(plan, mixture)
    net = load_net(str(ckpt))
    low = torchaudio.functional.resample(torch.tensor(mixture.T, dtype=torch.float32), 44100, 11025)
    expected = torchaudio.functional.resample(separate(net, low, segment=11025), 11025, 44100)
    for i, name in enumerate(plan.sources):
        assert estimates[name].shape == mixture.shape
        np.testing.assert_allclose(
            estimates[name], expected[i, :, : len(mixture)].T.numpy(), rtol=1e-4, atol=1e-5
        )
