"""Issue 21, item 6: outputs never overwrite each other: separations of songs of one name,
and the report's listening folders of tracks whose names differ only in punctuation."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from test_separate import gain_checkpoint, tone  # noqa: F401 (a fixture)

from ablation.cli import main


def test_songs_of_one_name_are_separated_into_their_own_folders(tmp_path, gain_checkpoint):  # noqa: F811
    songs = []
    for folder, seconds in (("a", 1.0), ("b", 1.5)):
        (tmp_path / folder).mkdir()
        sf.write(tmp_path / folder / "song.wav", tone(44100, seconds, 2), 44100)
        songs.append(str(tmp_path / folder / "song.wav"))
    out = tmp_path / "O"
    main(["separate", *songs, "--ckpt", str(gain_checkpoint), f"--out={out}", "--device=cpu"])
    lengths = sorted(sf.info(p).frames for p in out.glob("*/vocals.wav"))
    assert lengths == [44100, 66150]  # both separations kept
    assert sorted(p.name for p in out.iterdir()) == ["a-song", "b-song"]


def test_a_song_given_twice_is_refused_in_one_line(tmp_path, gain_checkpoint):  # noqa: F811
    song = tmp_path / "song.wav"
    sf.write(song, tone(44100, 0.5, 2), 44100)
    with pytest.raises(SystemExit) as exit_info:
        main(["separate", str(song), f"{tmp_path}/./song.wav", "--ckpt", str(gain_checkpoint)])
    assert str(exit_info.value.code).startswith("error: ") and "given twice" in str(
        exit_info.value.code
    )


def test_listening_folders_of_tracks_named_alike_are_distinct(tmp_path):
    from ablation.report import listening

    audio = {("mixture", "vocals"): np.zeros((2, 4410), dtype=np.float32) + 0.1}
    folders = set()
    for track in ("Song A", "Song A!", "Song A?"):
        clips = listening._write_clips(audio, 44100, tmp_path, track)
        folders.add(clips["mixture", "vocals"].audio.rsplit("/", 2)[-2])
    assert len(folders) == 3 and len(list((tmp_path / listening.FOLDER).iterdir())) == 3
