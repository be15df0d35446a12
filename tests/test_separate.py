"""Full-track separation (ablation.separate): overlap-add, checkpoint loading, files."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_checkpoint import write_checkpoint
from torch import nn

import ablation.checkpoint as checkpoint_module
from ablation.nets import SeparationNet, build
from ablation.separate import (
    SeparationError,
    segment_starts,
    separate,
    separate_file,
    separate_shifted,
)

SOURCES = ("drums", "bass", "other", "vocals")
GAINS = (0.5, -1.0, 2.0, 0.25)


class ConstantGain(nn.Module):
    """Each source is the mixture times a fixed gain: what overlap-add must reproduce."""

    def __init__(self, gains=GAINS, channels: int = 2):
        super().__init__()
        self.channels = channels
        self.gains = nn.Parameter(torch.tensor(gains).view(1, -1, 1, 1), requires_grad=False)
        self.config = {"dimension": "test"}

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        """(batch, channels, time) -> (batch, sources, channels, time)."""
        return mixture[:, None] * self.gains


def expected_gain_output(mixture: torch.Tensor) -> torch.Tensor:
    return torch.tensor(GAINS).view(-1, 1, 1) * mixture[None]


@pytest.mark.parametrize(
    ("length", "segment", "overlap", "batch_size"),
    [
        (10_007, 1000, 0.25, 3),  # prime length: the last segment overlaps more
        (9_000, 1000, 0.0, 4),  # no overlap, segments tile exactly
        (12_345, 2048, 0.5, 1),
        (700, 1000, 0.25, 4),  # shorter than one segment
    ],
)
def test_overlap_add_of_constant_gain_net_reproduces_input_at_seams(
    length, segment, overlap, batch_size
):
    mixture = torch.randn(2, length, generator=torch.Generator().manual_seed(0))
    got = separate(ConstantGain(), mixture, segment, overlap, batch_size)
    assert got.shape == (4, 2, length)
    torch.testing.assert_close(got, expected_gain_output(mixture), rtol=1e-6, atol=1e-6)
    # The seams themselves: every segment boundary, checked sample by sample.
    for start in segment_starts(length, min(segment, length), overlap)[1:]:
        seam = slice(start - 2, start + 2)
        torch.testing.assert_close(got[..., seam], expected_gain_output(mixture)[..., seam])


def test_segment_starts_cover_the_track_with_the_requested_hop():
    starts = segment_starts(10_007, 1000, 0.25)
    assert starts[:3] == [0, 750, 1500]
    assert starts[-1] + 1000 == 10_007  # the last segment ends at the end, unpadded
    assert all(b - a <= 750 for a, b in zip(starts, starts[1:], strict=False))


class Stateful(nn.Module):
    """A net whose output depends on its mode and batch composition: eval mode must be
    set, and the result must not depend on how segments are batched."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 8, 9, padding=4)
        self.dropout = nn.Dropout(0.5)

    def forward(self, mixture):
        """(batch, 2, time) -> (batch, 4, 2, time)."""
        return self.dropout(self.conv(mixture)).view(mixture.shape[0], 4, 2, -1)


def test_separate_runs_in_eval_mode_without_grad_and_ignores_batching():
    net = Stateful().train()
    mixture = torch.randn(2, 5000)
    one = separate(net, mixture, segment_samples=1024, batch_size=1)
    many = separate(net, mixture, segment_samples=1024, batch_size=5)
    assert not net.training and not one.requires_grad
    torch.testing.assert_close(one, many)


def test_separate_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"\(channels, time\)"):
        separate(ConstantGain(), torch.zeros(1, 2, 100), segment_samples=10)
    with pytest.raises(ValueError, match="overlap"):
        separate(ConstantGain(), torch.zeros(2, 100), segment_samples=10, overlap=1.0)


# ---- checkpoints --------------------------------------------------------------------


# ---- files ----------------------------------------------------------------------------


class GainNet(SeparationNet):
    """:class:`ConstantGain` as a net of the suite: it reads no context."""

    dimension, depth, sources, channels = "test", 0, len(GAINS), 2

    def __init__(self):
        super().__init__()
        self.inner = ConstantGain()
        self.config = {"dimension": "test"}

    def reach_samples(self) -> tuple[int, int]:
        return 0, 0

    def context_samples(self, region: int) -> int:
        return 0

    def forward(self, mixture: torch.Tensor, context: int = 0) -> torch.Tensor:
        """(batch, channels, time) -> (batch, sources, channels, time)."""
        return self.inner(mixture)


@pytest.fixture
def gain_checkpoint(tmp_path, monkeypatch) -> Path:
    """A checkpoint whose net is :class:`GainNet` (the checkpoint's build is redirected)."""
    monkeypatch.setattr(checkpoint_module, "build", lambda config: GainNet())
    return write_checkpoint(tmp_path / "gain.ckpt", GainNet(), segment=0.5)


def tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    return np.stack([np.sin(2 * np.pi * 220 * (c + 1) * t) * 0.3 for c in range(channels)], 1)


def test_separate_file_writes_one_wav_per_source_at_the_song_rate(tmp_path, gain_checkpoint):
    song = tmp_path / "song.flac"
    audio = tone(44100, 2.3, channels=2)
    sf.write(song, audio, 44100)
    paths = separate_file(gain_checkpoint, song, tmp_path / "out", overlap=0.25, batch_size=2)
    assert sorted(paths) == sorted(SOURCES)
    for source, gain in zip(SOURCES, GAINS, strict=True):
        stem, rate = sf.read(paths[source], dtype="float32")
        assert rate == 44100 and paths[source] == tmp_path / "out" / f"{source}.wav"
        # FLAC is 16-bit: compare with what soundfile reads back of the song.
        np.testing.assert_allclose(stem, gain * sf.read(song, dtype="float32")[0], atol=1e-6)


def test_separate_file_resamples_and_keeps_a_mono_song_mono(tmp_path, gain_checkpoint):
    song = tmp_path / "mono.wav"
    audio = tone(22050, 1.7, channels=1)[:, 0]
    sf.write(song, audio, 22050, subtype="FLOAT")
    paths = separate_file(gain_checkpoint, song, tmp_path / "out")
    stem, rate = sf.read(paths["other"], dtype="float32")
    assert rate == 22050 and stem.shape == audio.shape
    # 22.05 -> 44.1 -> 22.05 kHz of a 220 Hz tone is transparent away from the edges.
    np.testing.assert_allclose(stem[500:-500], 2.0 * audio[500:-500], atol=1e-3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: None, "not found"),
        (lambda p: p.write_text("not audio"), "could not read"),
        (lambda p: sf.write(p, np.zeros((100, 3)), 44100), "3 channels"),
    ],
)
def test_separate_file_explains_bad_audio(tmp_path, gain_checkpoint, make, message):
    song = tmp_path / "bad.wav"
    make(song)
    with pytest.raises(SeparationError, match=message):
        separate_file(gain_checkpoint, song, tmp_path / "out")


def test_chunks_read_real_context_so_separation_has_no_seams():
    """A valid Wave-U-Net depends only on its receptive field: separated chunk by chunk
    with the song around every chunk, it gives what one pass over the song gives.
    (Chunks start at multiples of 2**depth, the grid its decimation is invariant to.)"""

    net = build("wave-unet-m6", depth=3, filters=4).eval()
    mixture = torch.randn(2, 9000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = net(mixture[None])[0]
    chunked = separate(net, mixture, segment_samples=1024, overlap=0.25)  # starts 0, 768, ..., 7976
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)
    # without context every chunk edge sees zeros, and the seams show
    blind = separate(net, mixture, segment_samples=1024, overlap=0.25, context=0)
    assert (blind - whole).abs().max() > 1e-3


class WindowMean(ConstantGain):
    """Adds the mean of the chunk it sees: its estimates depend on where chunks fall."""

    sample_rate = 2000  # the shift trick's 0.5 s is 1000 samples

    def forward(self, mixture: torch.Tensor) -> torch.Tensor:
        return super().forward(mixture) + mixture.mean((-1, -2))[:, None, None, None]


def test_shifts_average_separations_of_the_song_delayed_by_seeded_offsets():
    mixture = torch.randn(2, 5000, generator=torch.Generator().manual_seed(2))
    aligned = ConstantGain()
    aligned.sample_rate = WindowMean.sample_rate
    torch.testing.assert_close(
        separate_shifted(aligned, mixture, 800, shifts=3), expected_gain_output(mixture)
    )
    net = WindowMean()
    delays = np.random.default_rng(7).integers(0, 1000, size=2)  # [0, 0.5 s) at 2 kHz
    passes = []
    for delay in delays.tolist():  # delay, separate, move back
        delayed = torch.nn.functional.pad(mixture, (delay, 1000 - delay))
        passes.append(separate(net, delayed, 800)[..., delay : delay + 5000])
    shifted = separate_shifted(net, mixture, 800, shifts=2, seed=7)
    torch.testing.assert_close(shifted, (passes[0] + passes[1]) / 2, rtol=0, atol=1e-5)
    assert (shifted - separate(net, mixture, 800)).abs().max() > 1e-3
    assert (shifted - separate_shifted(net, mixture, 800, shifts=2, seed=8)).abs().max() > 1e-4
    torch.testing.assert_close(
        separate_shifted(net, mixture, 800, shifts=0), separate(net, mixture, 800)
    )
