"""Bad audio is refused when it enters the decode-once cache, with one line naming the file:
non-finite samples, empty decodes, silent tracks, and truncated ``.stem.mp4`` files."""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ablation.constants import SOURCES
from datamodules.cache import TrackCache
from datamodules.layout import DataError, TrackRef

RATE = 8000
needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg not on PATH")


def hq_track(root: Path, stems: dict[str, np.ndarray] | None = None) -> TrackRef:
    """One HQ track of 1 s of noise per source (float wav, so NaN and inf survive)."""
    folder = root / "train" / "song"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for source in SOURCES:
        audio = (stems or {}).get(source)
        if audio is None:
            audio = 0.1 * rng.standard_normal((RATE, 2)).astype(np.float32)
        sf.write(folder / f"{source}.wav", audio, RATE, subtype="FLOAT")
    return TrackRef("song", "train", folder, True)


def cache(tmp_path: Path, root: Path, sample_rate: int = RATE) -> TrackCache:
    return TrackCache(tmp_path / "cache", root, sample_rate, 2)


def refused(tmp_path: Path, track: TrackRef, sample_rate: int = RATE) -> str:
    """The one-line message of the refusal; the refused track leaves no cache entry."""
    store = cache(tmp_path, track.path.parents[1], sample_rate)
    with pytest.raises(DataError) as info:
        store.ensure([track], progress=False)
    assert store.load(track) is None
    message = str(info.value)
    assert "\n" not in message, message
    return message


def test_clean_track_with_one_silent_stem_is_cached(tmp_path):
    """An instrumental track has silent vocals throughout: that is music, not a fault."""
    track = hq_track(tmp_path / "data", {"vocals": np.zeros((RATE, 2), np.float32)})
    store = cache(tmp_path, tmp_path / "data")
    store.ensure([track], progress=False)
    array = store.load(track)
    assert array is not None and array.shape == (len(SOURCES), 2, RATE)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_samples_are_refused_naming_the_file(tmp_path, bad):
    audio = np.full((RATE, 2), 0.1, np.float32)
    audio[RATE // 2, 1] = bad
    track = hq_track(tmp_path / "data", {"bass": audio})
    message = refused(tmp_path, track)
    assert str(track.path / "bass.wav") in message
    assert "non-finite" in message and "0.5" in message  # where: 0.5 s into the file


def test_non_finite_samples_are_refused_before_resampling(tmp_path):
    """Resampling would smear one NaN over its neighbours and hide which file held it."""
    audio = np.full((RATE, 2), 0.1, np.float32)
    audio[10, 0] = np.nan
    track = hq_track(tmp_path / "data", {"drums": audio})
    assert str(track.path / "drums.wav") in refused(tmp_path, track, sample_rate=2 * RATE)


def test_empty_stem_file_is_refused(tmp_path):
    empty = np.zeros((0, 2), np.float32)
    track = hq_track(tmp_path / "data", {s: empty for s in SOURCES})
    message = refused(tmp_path, track, sample_rate=2 * RATE)
    assert str(track.path) in message and "no samples" in message


def test_track_whose_every_stem_is_silent_is_refused(tmp_path):
    silent = np.zeros((RATE, 2), np.float32)
    track = hq_track(tmp_path / "data", {s: silent for s in SOURCES})
    message = refused(tmp_path, track)
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


@needs_ffmpeg
@pytest.mark.parametrize("cut", [header_only, half], ids=["header-only", "half"])
@pytest.mark.parametrize("sample_rate", [44100, 22050])
def test_truncated_stem_file_is_refused_naming_the_file(musdb_sample, tmp_path, cut, sample_rate):
    track = cut_copy(musdb_sample, tmp_path, cut)
    message = refused(tmp_path, track, sample_rate)
    assert str(track.path) in message
    assert "truncated" in message and "download" in message.lower()
    assert "warnings" not in message  # not stempeg's own bug on streams of unequal length


@needs_ffmpeg
def test_stem_file_cut_inside_its_header_is_refused_in_one_line(musdb_sample, tmp_path):
    track = cut_copy(musdb_sample, tmp_path, inside_header)
    message = refused(tmp_path, track, 44100)
    assert str(track.path) in message and "download" in message.lower()
    assert "ffprobe version" not in message and "libavformat" not in message


@needs_ffmpeg
def test_whole_stem_file_still_decodes(musdb_sample, tmp_path):
    track = cut_copy(musdb_sample, tmp_path, lambda boxes, size: size)
    store = cache(tmp_path, track.path.parents[1], 44100)
    store.ensure([track], progress=False)
    array = store.load(track)
    # The container promises 6.8 s (ffprobe); AAC decoding may add a frame of padding.
    assert array is not None and 6.8 * 44100 <= array.shape[-1] < 6.9 * 44100


def test_separate_refuses_non_finite_input(tmp_path):
    from ablation.separate import SeparationError, read_audio

    audio = np.full((RATE, 2), 0.1, np.float32)
    audio[RATE // 4, 0] = np.nan
    song = tmp_path / "song.wav"
    sf.write(song, audio, RATE, subtype="FLOAT")
    with pytest.raises(SeparationError) as info:
        read_audio(song)
    message = str(info.value)
    assert str(song) in message and "non-finite" in message and "\n" not in message
