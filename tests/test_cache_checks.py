"""Bad audio is refused when it enters the decode-once cache, leaving no entry behind (the
checks themselves, by kind of damage, are tested with the reader in tests/tracks/), and
``ablation separate`` refuses non-finite input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from tracks.helpers import hq_track

from ablation.constants import SOURCES
from ablation.tracks import DataError, TrackRef
from datamodules.cache import TrackCache

RATE = 8000


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


def test_track_whose_every_stem_is_silent_is_refused(tmp_path):
    silent = np.zeros((RATE, 2), np.float32)
    track = hq_track(tmp_path / "data", {s: silent for s in SOURCES})
    message = refused(tmp_path, track)
    assert str(track.path) in message and "silent" in message


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
