"""Issue 21, item 1: the suite never deletes nor overwrites what it did not write. Generated
datasets carry a marker; ``toy-data`` refuses a folder holding anything else; the demo
removes only what the marker lists, and says so."""

from __future__ import annotations

import pytest

from ablation.errors import AblationError
from datamodules.toy import make_toy_dataset

MARKER = ".ablation-generated.json"

SMALL = dict(n_train=1, n_test=1, duration=0.2, progress=False)


def user_song(root):
    song = root / "train" / "mysong"
    song.mkdir(parents=True)
    (song / "vocals.wav").write_bytes(b"my own recording")
    return song / "vocals.wav"


def test_a_generated_dataset_is_marked_with_its_recipe_and_files(tmp_path):
    from datamodules.generated import foreign_files, read_marker

    root = make_toy_dataset(tmp_path / "toy", **SMALL)
    marker = read_marker(root)
    assert marker["generator"] == "toy" and marker["complete"] is True
    assert marker["recipe"]["n_train"] == 1 and "toy.json" in marker["files"]
    assert len([f for f in marker["files"] if f.endswith(".wav")]) == 10
    assert foreign_files(root) == []


def test_toy_data_refuses_a_folder_holding_a_users_files(tmp_path):
    from ablation.cli import main

    root = tmp_path / "D"
    mine = user_song(root)
    with pytest.raises(SystemExit) as exit_info:
        main(["toy-data", str(root), "--train=1", "--test=1", "--duration=0.2"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "train/mysong/vocals.wav" in message
    assert "\n" not in message and mine.read_bytes() == b"my own recording"
    assert not (root / "test").exists() and not (root / MARKER).exists()


def test_a_second_generation_replaces_only_its_own_files(tmp_path):
    from datamodules.generated import GeneratedDataError, remove_generated

    root = make_toy_dataset(tmp_path / "toy", n_train=3, n_test=1, duration=0.2, progress=False)
    make_toy_dataset(root, **SMALL)
    assert len(list((root / "train").iterdir())) == 1  # the older tracks went, as recorded
    mine = user_song(root)
    with pytest.raises(GeneratedDataError, match="mysong"):
        make_toy_dataset(root, **SMALL)
    with pytest.raises(GeneratedDataError, match="mysong"):
        remove_generated(root)
    assert mine.exists() and (root / "test").is_dir()


def test_an_interrupted_generation_is_not_taken_for_a_finished_one(tmp_path):
    from datamodules.generated import (
        GeneratedDataError,
        generated_dataset,
        read_marker,
        remove_generated,
    )

    root = tmp_path / "g"
    with pytest.raises(RuntimeError), generated_dataset(root, "other", {"n": 1}):
        (root / "half.wav").write_bytes(b"x")
        raise RuntimeError("killed")
    assert read_marker(root)["complete"] is False
    with pytest.raises(GeneratedDataError, match="interrupted"):
        remove_generated(root)
    assert (root / "half.wav").exists()


def test_the_demo_never_removes_a_users_tracks(tmp_path):
    """The issue's case: at the demo's own root, a toy dataset not the demo's, with the
    user's own track beside it. On main the demo removed D/train (and mysong) without a
    word. (Data at any other root is trained on as it is: tests/test_commands.py.)"""
    from ablation.demo import _prepare_toy

    root = make_toy_dataset(tmp_path / "D", **SMALL)
    mine = user_song(root)
    with pytest.raises(AblationError, match="mysong"):
        _prepare_toy(root, tmp_path / "runs" / "demo", tmp_path / "out")
    assert mine.read_bytes() == b"my own recording"
    assert len(list((root / "train").iterdir())) == 2 and (root / "test").is_dir()


def test_the_demo_replaces_its_own_stale_toy_data_and_names_what_it_removes(
    tmp_path, monkeypatch, capsys
):
    from ablation import demo

    root = make_toy_dataset(tmp_path / "D", **SMALL)
    runs, out = tmp_path / "runs" / "demo", tmp_path / "out"
    (runs / "1d-depth2-seed0").mkdir(parents=True)
    (runs / "1d-depth2-seed0" / "config.yaml").write_text("{}")
    (runs / "notes").mkdir()  # not a run folder: kept
    out.mkdir()
    (out / "table.csv").write_text("x")
    (out / "mine.txt").write_text("kept")
    made = []
    monkeypatch.setattr(demo, "make_rendered_dataset", lambda r, **kw: made.append(kw))
    demo._prepare_toy(root, runs, out)
    printed = capsys.readouterr().out
    assert "the 11 files its marker lists" in printed
    assert str(runs / "1d-depth2-seed0") in printed and str(out / "table.csv") in printed
    assert not (root / "train").exists() and not (runs / "1d-depth2-seed0").exists()
    assert (runs / "notes").is_dir() and (out / "mine.txt").exists() and made == [demo.TOY]
