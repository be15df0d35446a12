"""Atomic writes and tolerant reads of the suite's small files (ablation.files)."""

from __future__ import annotations

import json
import os

import pytest

import ablation.files as files


def test_an_interrupted_write_leaves_the_previous_file_and_no_leftover(tmp_path, monkeypatch):
    path = tmp_path / "track.json"
    files.write_text(path, "old")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_text(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["track.json"]


def test_json_is_standard_and_reads_forgive_missing_or_broken_files(tmp_path):
    path = tmp_path / "sub" / "summary.json"
    files.write_json(path, {"a": float("nan"), "b": [1.0, float("inf")], "c": {"d": 2}})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": {"d": 2}}
    assert files.read_json(path)["c"] == {"d": 2}
    assert files.read_json(tmp_path / "absent.json") == {}
    (tmp_path / "broken.json").write_text('{"a": ')
    assert files.read_json(tmp_path / "broken.json") == {}


def test_written_files_get_the_usual_mode_not_a_private_one(tmp_path):
    path = tmp_path / "index.html"
    files.write_text(path, "<html></html>")
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
