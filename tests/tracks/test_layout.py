"""Finding tracks on disk: forms, errors that say what to do, the official split."""

from __future__ import annotations

import pytest

from ablation.tracks import (
    DataError,
    detect_is_wav,
    list_tracks,
    official_validation_tracks,
    require_ffmpeg,
    split_train_valid,
)
from tracks.helpers import noise_stems, write_hq_track


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"does not exist.*toy-data"):
        detect_is_wav(tmp_path / "nope")


def test_empty_root(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no train/ or test/.*empty"):
        detect_is_wav(tmp_path / "empty")


def test_root_in_neither_layout(tmp_path):
    (tmp_path / "root" / "train" / "song").mkdir(parents=True)
    (tmp_path / "root" / "train" / "song" / "guitar.wav").write_bytes(b"")
    with pytest.raises(DataError, match="neither MUSDB18 layout"):
        list_tracks(tmp_path / "root", "train")


def test_stems_without_ffmpeg(musdb_sample, monkeypatch):
    monkeypatch.setattr("ablation.tracks.layout.shutil.which", lambda name: None)
    with pytest.raises(DataError, match=r"need the ffmpeg binary.*apt-get install ffmpeg"):
        require_ffmpeg(list_tracks(musdb_sample, "train"))


def test_tracks_are_listed_in_name_order(tmp_path):
    for name in ("b", "a", "c"):
        write_hq_track(tmp_path / "root" / "test" / name, noise_stems(0.01))
    assert [t.name for t in list_tracks(tmp_path / "root", "test")] == ["a", "b", "c"]
    with pytest.raises(DataError, match=r"no tracks in .*train"):
        list_tracks(tmp_path / "root", "train")


def test_official_split_is_used_when_its_tracks_are_present(tmp_path):
    official = official_validation_tracks()[:2]
    for name in [*official, "Some Artist - Some Song"]:
        write_hq_track(tmp_path / "root" / "train" / name, noise_stems(0.1))
    tracks = list_tracks(tmp_path / "root", "train")
    splits = dict(zip(("train", "valid"), split_train_valid(tracks, 0.1, 0), strict=True))
    assert sorted(t.name for t in splits["valid"]) == sorted(official)
    assert [t.name for t in splits["train"]] == ["Some Artist - Some Song"]
