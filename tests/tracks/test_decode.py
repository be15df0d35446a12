"""Decoding a track of either form: bad audio is refused in one line naming the file
(missing, corrupt, inconsistent, non-finite, empty, silent, truncated ``.stem.mp4``), and
training and evaluation read identical samples."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import musdb
import numpy as np
import pytest
import soundfile as sf

from ablation.constants import SOURCES
from ablation.tracks import DataError, TrackRef, decode_track, list_tracks
from tracks.helpers import hq_track, noise_stems, write_hq_track

RATE = 8000
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH")


def decode_first(root: Path) -> np.ndarray:
    return decode_track(list_tracks(root, "train")[0], 44100, 2)


def refused(track: TrackRef, sample_rate: int = RATE) -> str:
    """The one-line message of the refusal."""
    with pytest.raises(DataError) as info:
        decode_track(track, sample_rate, 2)
    message = str(info.value)
    assert "\n" not in message, message
    return message


# ---- HQ folders ----------------------------------------------------------------------
def test_corrupt_wav(tmp_path):
    write_hq_track(tmp_path / "root" / "train" / "a", noise_stems(0.2))
    (tmp_path / "root" / "train" / "a" / "bass.wav").write_bytes(b"RIFF garbage, not audio")
    with pytest.raises(DataError, match=r"bass.wav could not be decoded"):
        decode_first(tmp_path / "root")


def test_missing_stem_file(tmp_path):
    write_hq_track(tmp_path / "root" / "train" / "a", noise_stems(0.2))
    (tmp_path / "root" / "train" / "a" / "other.wav").unlink()
    with pytest.raises(DataError, match=r"other.wav is missing"):
        decode_first(tmp_path / "root")


def test_stems_of_different_lengths(tmp_path):
    stems = noise_stems(0.2)
    stems["vocals"] = stems["vocals"][:-10]
    write_hq_track(tmp_path / "root" / "train" / "a", stems)
    with pytest.raises(DataError, match=r"disagree in length.*'vocals': 8810"):
        decode_first(tmp_path / "root")


def test_stems_of_different_sample_rates(tmp_path):
    write_hq_track(tmp_path / "root" / "train" / "a", noise_stems(0.2))
    sf.write(tmp_path / "root" / "train" / "a" / "drums.wav", noise_stems(0.2)["drums"], 48000)
    with pytest.raises(DataError, match=r"disagree in sample rate.*'drums': 48000"):
        decode_first(tmp_path / "root")


def test_clean_track_with_one_silent_stem_decodes(tmp_path):
    """An instrumental track has silent vocals throughout: that is music, not a fault."""
    track = hq_track(tmp_path / "data", {"vocals": np.zeros((RATE, 2), np.float32)})
    array = decode_track(track, RATE, 2)
    assert array is not None and array.shape == (len(SOURCES), 2, RATE)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_samples_are_refused_naming_the_file(tmp_path, bad):
    audio = np.full((RATE, 2), 0.1, np.float32)
    audio[RATE // 2, 1] = bad
    track = hq_track(tmp_path / "data", {"bass": audio})
    message = refused(track)
    assert str(track.path / "bass.wav") in message
    assert "non-finite" in message and "0.5" in message  # where: 0.5 s into the file


def test_non_finite_samples_are_refused_before_resampling(tmp_path):
    """Resampling would smear one NaN over its neighbours and hide which file held it."""
    audio = np.full((RATE, 2), 0.1, np.float32)
    audio[10, 0] = np.nan
    track = hq_track(tmp_path / "data", {"drums": audio})
    assert str(track.path / "drums.wav") in refused(track, sample_rate=2 * RATE)


def test_empty_stem_file_is_refused(tmp_path):
    empty = np.zeros((0, 2), np.float32)
    track = hq_track(tmp_path / "data", {s: empty for s in SOURCES})
    message = refused(track, sample_rate=2 * RATE)
    assert str(track.path) in message and "no samples" in message


def test_track_whose_every_stem_is_silent_is_refused(tmp_path):
    silent = np.zeros((RATE, 2), np.float32)
    track = hq_track(tmp_path / "data", {s: silent for s in SOURCES})
    message = refused(track)
    assert str(track.path) in message and "silent" in message


# ---- truncated MUSDB18 stem files ----------------------------------------------------
def mp4_boxes(data: bytes) -> dict[str, tuple[int, int]]:
    """Top-level MP4 boxes: type -> (offset, size)."""
    boxes, offset = {}, 0
    while offset + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        boxes[kind.decode("latin-1")] = (offset, size)
        if size < 8:
            break
        offset += size
    return boxes


def cut_copy(musdb_sample: Path, tmp_path: Path, keep) -> TrackRef:
    """A copy of the real sample track with only ``keep(boxes, size)`` bytes left."""
    original = next((musdb_sample / "train").glob("*.stem.mp4"))
    data = original.read_bytes()
    boxes = mp4_boxes(data)
    assert "moov" in boxes and "mdat" in boxes, sorted(boxes)
    path = tmp_path / "data" / "train" / original.name
    path.parent.mkdir(parents=True)
    path.write_bytes(data[: keep(boxes, len(data))])
    return TrackRef(original.name.removesuffix(".stem.mp4"), "train", path, False)


def header_only(boxes, size):
    """Every byte of the header (moov), none of the audio: ffmpeg decodes 0 samples."""
    offset, length = boxes["mdat"]
    return offset + 16


def half(boxes, size):
    return size // 2


def inside_header(boxes, size):
    """A few bytes of the file type box: ffprobe finds no header to read."""
    return boxes["moov"][0] // 2


def test_truncated_stems_file(musdb_sample, tmp_path):
    broken = tmp_path / "root" / "train" / "Broken - Song.stem.mp4"
    broken.parent.mkdir(parents=True)
    src = musdb_sample / "train" / "Music Delta - 80s Rock.stem.mp4"
    broken.write_bytes(src.read_bytes()[:50_000])
    with pytest.raises(DataError, match=r"Broken - Song.stem.mp4 could not be decoded.*truncated"):
        decode_first(tmp_path / "root")


@needs_ffmpeg
@pytest.mark.parametrize("cut", [header_only, half], ids=["header-only", "half"])
@pytest.mark.parametrize("sample_rate", [44100, 22050])
def test_truncated_stem_file_is_refused_naming_the_file(musdb_sample, tmp_path, cut, sample_rate):
    track = cut_copy(musdb_sample, tmp_path, cut)
    message = refused(track, sample_rate)
    assert str(track.path) in message
    assert "truncated" in message and "download" in message.lower()
    assert "warnings" not in message  # not stempeg's own bug on streams of unequal length


@needs_ffmpeg
def test_stem_file_cut_inside_its_header_is_refused_in_one_line(musdb_sample, tmp_path):
    track = cut_copy(musdb_sample, tmp_path, inside_header)
    message = refused(track, 44100)
    assert str(track.path) in message and "download" in message.lower()
    assert "ffprobe version" not in message and "libavformat" not in message


@needs_ffmpeg
def test_whole_stem_file_still_decodes(musdb_sample, tmp_path):
    track = cut_copy(musdb_sample, tmp_path, lambda boxes, size: size)
    array = decode_track(track, 44100, 2)
    # The container promises 6.8 s (ffprobe); AAC decoding may add a frame of padding.
    assert array is not None and 6.8 * 44100 <= array.shape[-1] < 6.9 * 44100


# ---- one reader for training and evaluation -----------------------------------------
@pytest.mark.parametrize("form", ["stems", "hq"])
def test_training_and_evaluation_read_identical_audio(musdb_sample, tmp_path, form):
    from ablation.evaluation.request import prepare
    from ablation.evaluation.tracks import load_track
    from datamodules import MUSDBDataModule

    track = musdb.DB(root=str(musdb_sample), subsets="train").tracks[0]
    root = musdb_sample
    if form == "hq":
        # musdb decodes 16-bit PCM, so a PCM_16 copy is the lossless HQ form of the same track
        root = tmp_path / "hq"
        write_hq_track(root / "train" / track.name, {s: track.sources[s].audio for s in SOURCES})
        sf.write(root / "train" / track.name / "mixture.wav", track.audio, 44100, "PCM_16")
    dm = MUSDBDataModule(
        root=str(root), cache_dir=str(tmp_path / "cache"), targets="4stems", progress=False
    )
    training = np.asarray(dm.arrays("train")[0])  # the DataModule's cache entry
    out = str(tmp_path / "out")
    plan, names = prepare(None, str(root), "train", out, "mixture", "torch", "cpu")
    evaluation = load_track(plan, names[0])
    assert (evaluation.name, evaluation.rate) == (track.name, 44100)
    stacked = np.stack([evaluation.sources[s].T for s in SOURCES])
    assert stacked.dtype == np.float64 and stacked.shape == training.shape
    np.testing.assert_array_equal(stacked, training.astype(np.float64))
    # and what evaluation reads is what musdb (and so museval) reads
    np.testing.assert_array_equal(evaluation.mixture, track.audio)
    for source in SOURCES:
        np.testing.assert_array_equal(evaluation.sources[source], track.sources[source].audio)
