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
    assert (plan.sample_rate, plan.net_rate, plan.segment_samples) == (44100, 11025, 11025)
    mixture = load_track(plan, names[0]).mixture  # (samples, channels) at 44.1 kHz
    estimates = separate_track(plan, mixture)
    net = load_net(str(ckpt))
    low = torchaudio.functional.resample(torch.tensor(mixture.T, dtype=torch.float32), 44100, 11025)
    at_net = separate(net, low, segment_samples=11025)
    expected = torchaudio.functional.resample(at_net, 11025, 44100)
    for i, name in enumerate(plan.sources):
        assert estimates[name].shape == mixture.shape
        np.testing.assert_allclose(
            estimates[name], expected[i, :, : len(mixture)].T.numpy(), rtol=1e-4, atol=1e-5
        )


def test_shifts_are_averaged_recorded_and_kept_apart_from_one_pass(toy1, tmp_path):
    import json

    import pytest

    from ablation.checkpoint import load_net
    from ablation.evaluation import EvaluationError
    from ablation.evaluation.request import prepare
    from ablation.evaluation.separation import separate_track
    from ablation.evaluation.tracks import load_track
    from ablation.separate import separate_shifted

    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    plan, names = prepare(str(ckpt), str(toy1), "test", None, None, "torch", "cpu", shifts=2)
    assert plan.out.endswith("last-eval-test-shifts2") and plan.shifts == 2
    assert json.loads((tmp_path / "run" / "checkpoints" / plan.out / "evaluation.json")
                      .read_text())["shifts"] == 2  # fmt: skip
    mixture = load_track(plan, names[0]).mixture
    estimates = separate_track(plan, mixture)
    net = load_net(str(ckpt))
    with torch.inference_mode():
        expected = separate_shifted(net, torch.tensor(mixture.T, dtype=torch.float32), 44100, 2)
        one_pass = separate_shifted(net, torch.tensor(mixture.T, dtype=torch.float32), 44100)
    vocals = plan.sources.index("vocals")
    np.testing.assert_allclose(estimates["vocals"], expected[vocals].T.numpy(), atol=1e-6)
    assert np.abs(estimates["vocals"] - one_pass[vocals].T.numpy()).max() > 1e-6
    # the same folder refuses another number of shifts; an old manifest meant none
    out = str(tmp_path / "out")
    prepare(str(ckpt), str(toy1), "test", out, None, "torch", "cpu")
    manifest = tmp_path / "out" / "evaluation.json"
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items()
                                    if k != "shifts"}))  # fmt: skip
    prepare(str(ckpt), str(toy1), "test", out, None, "torch", "cpu", shifts=0)
    with pytest.raises(EvaluationError, match="shifts=0"):
        prepare(str(ckpt), str(toy1), "test", out, None, "torch", "cpu", shifts=3)
    with pytest.raises(EvaluationError, match="SHIFTS=2 with BASELINE=mixture"):
        prepare(None, str(toy1), "test", out, "mixture", "torch", "cpu", shifts=2)
