"""Per-track result files: never trusted when truncated; a rerun scores only the missing tracks."""

from __future__ import annotations

import shutil

import museval
import pandas as pd
import pytest
from evaluation_helpers import evaluate_pair

from ablation.evaluation import METRICS, EvaluationError, pool, read_track_file
from ablation.files import write_text


def test_truncated_track_files_are_never_trusted(tmp_path):
    path = tmp_path / "track.json"
    store = museval.TrackStore("t")
    store.add_target("vocals", dict.fromkeys(METRICS, [1.0]))
    store.scores["mse"] = {"vocals": 0.1}
    write_text(path, store.json)
    assert read_track_file(path, ["vocals"]) is not None
    path.write_text(store.json[: len(store.json) // 2])
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert read_track_file(path, ["vocals"]) is None
    with pytest.warns(UserWarning, match="expected"):
        write_text(path, store.json)
        assert read_track_file(path, ["vocals", "drums"]) is None


def test_a_failing_track_keeps_the_others_and_a_rerun_scores_only_it(toy, tmp_path, monkeypatch):
    root = tmp_path / "broken"
    shutil.copytree(toy, root)
    good, bad = sorted((root / "test").iterdir())
    drums = (bad / "drums.wav").read_bytes()
    (bad / "drums.wav").write_bytes(b"RIFF")
    out = tmp_path / "o"

    with pytest.raises(EvaluationError, match=r"1 of 2 tracks failed.*1 scored tracks are kept"):
        evaluate_pair(root, out)
    kept = (out / "test" / f"{good.name}.json").read_text()
    assert not (out / "summary.json").exists()
    (bad / "drums.wav").write_bytes(drums)
    calls = []
    real = pool.score_track_file
    monkeypatch.setattr(
        pool, "score_track_file", lambda plan, name: calls.append(name) or real(plan, name)
    )
    evaluate_pair(root, out)
    assert calls == [bad.name]
    assert (out / "test" / f"{good.name}.json").read_text() == kept
    assert sorted(pd.read_csv(out / "tracks.csv").track.unique()) == [good.name, bad.name]
