"""The demo's toy data: enough test tracks for a significance test, rewritten when it is
not the demo's, and any-stem data trained on all its stems."""

from __future__ import annotations

import json

import soundfile as sf
from test_stems import write_dataset

from ablation.demo import OWN, TOY, _data_args, _stale_toy, report_section
from ablation.report.significance import smallest_p
from datamodules.toy import make_toy_dataset, toy_recipe


def test_the_demo_has_enough_test_tracks_for_p_below_005():
    assert TOY["n_test"] >= 8
    assert smallest_p(TOY["n_test"]) < 0.05 / 4  # room for a correction over comparisons


def test_toy_test_tracks_have_their_own_length_and_the_recipe_is_kept(tmp_path):
    root = make_toy_dataset(
        tmp_path / "toy", n_train=1, n_test=2, duration=1.0, test_duration=0.5, progress=False
    )
    train = sf.info(next((root / "train").iterdir()) / "vocals.wav")
    tests = [sf.info(p / "mixture.wav") for p in sorted((root / "test").iterdir())]
    assert train.frames == 44100 and [t.frames for t in tests] == [22050, 22050]
    assert toy_recipe(root)["test_duration"] == 0.5 and toy_recipe(root)["n_test"] == 2


def test_toy_data_command_takes_a_test_track_length(tmp_path, capsys):
    from ablation.cli import main

    main(["toy-data", str(tmp_path / "toy"), "--train=1", "--test=1", "--duration=0.5",
          "--test-duration=0.25"])  # fmt: skip
    test_track = next((tmp_path / "toy" / "test").iterdir())
    assert sf.info(test_track / "mixture.wav").frames == 11025
    assert toy_recipe(tmp_path / "toy")["test_duration"] == 0.25
    assert "1 train, 1 test tracks" in capsys.readouterr().out


def test_a_toy_dataset_that_is_not_the_demos_is_stale(tmp_path):
    other = make_toy_dataset(tmp_path / "other", n_train=1, n_test=1, duration=0.5, progress=False)
    assert _stale_toy(other)
    # one of an older version (no recipe), recognised by its folder names
    (other / "toy.json").unlink()
    assert _stale_toy(other)
    # the demo's own recipe (a rendered dataset), and other data, are used as they are
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "rendered.json").write_text(json.dumps(OWN))
    assert not _stale_toy(tmp_path / "own")
    # but not the same recipe rendered by the former renderer (no version in its recipe)
    (tmp_path / "own" / "rendered.json").write_text(json.dumps(TOY))
    assert _stale_toy(tmp_path / "own")
    assert not _stale_toy(write_dataset(tmp_path / "five", n_train=1, n_test=1, seconds=0.2))


def test_the_demo_trains_any_stem_data_on_all_its_stems(tmp_path, toy_root):
    five = write_dataset(tmp_path / "five", n_train=1, n_test=1, seconds=0.2)
    assert _data_args(five) == [f"--data.root={five}", "--data.targets=all"]
    assert _data_args(toy_root) == [f"--data.root={toy_root}"]


def test_the_significance_section_is_cut_from_the_report():
    report = "# R\n\n## Runs\n\nx\n\n## Significance: W\n\np table\n\n![plot](a.png)\n"
    assert report_section(report, "## Significance") == "## Significance: W\n\np table"
    last = report_section("## Significance: W\n\nlast\n", "## Significance")
    assert last == "## Significance: W\n\nlast"
