"""Matching a sample rate and a channel count."""

from __future__ import annotations

import pytest
import torch

from ablation.tracks import DataError, resample, to_channels


def test_channels_are_averaged_to_mono_and_duplicated_to_stereo():
    stereo = torch.randn(4, 2, 100)
    torch.testing.assert_close(to_channels(stereo, 1, "x"), stereo.mean(1, keepdim=True))
    assert to_channels(stereo, 2, "x") is stereo
    doubled = to_channels(stereo[:, :1], 2, "x")
    assert doubled.shape == (4, 2, 100) and torch.equal(doubled[:, 0], doubled[:, 1])
    with pytest.raises(DataError, match=r"track t has 3 channels, but 2 were asked for"):
        to_channels(torch.zeros(4, 3, 10), 2, "track t")


def test_resample_changes_the_rate_and_fits_a_length():
    audio = torch.randn(2, 2, 4410)
    assert resample(audio, 44100, 44100) is audio
    assert resample(audio, 44100, 22050).shape == (2, 2, 2205)
    assert resample(audio, 44100, 22050, length=3000).shape == (2, 2, 3000)
    assert resample(audio, 44100, 44100, length=100).shape == (2, 2, 100)
