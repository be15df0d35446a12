"""W&B: the checkpoint's training run is found and the scores are logged into it, offline."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from ablation.constants import WANDB_PROJECT
from ablation.evaluation import evaluate_checkpoint, find_wandb_run


def test_find_wandb_run_reads_the_runners_file_or_the_run_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    run = tmp_path / "runs" / "s" / "r"
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    assert find_wandb_run(str(ckpt)).id is None
    (run / "wandb" / "offline-run-20250101_000000-abc123").mkdir(parents=True)
    found = find_wandb_run(str(ckpt))
    assert (found.id, found.project, found.folder) == ("abc123", WANDB_PROJECT, run)
    (run / "wandb_run.json").write_text(json.dumps({"id": "j1", "project": "p", "entity": "e"}))
    found = find_wandb_run(str(ckpt))
    assert (found.id, found.project, found.entity) == ("j1", "p", "e")


def test_scores_are_logged_offline_into_the_run_of_the_checkpoint(
    ckpt_eval, toy1, tmp_path, monkeypatch
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    run = ckpt_eval.parent.parent
    (run / "wandb_run.json").write_text(json.dumps({"id": "trainrun1", "project": "ablation-test"}))
    # Everything is scored already: this only aggregates and logs.
    evaluate_checkpoint(
        str(ckpt_eval.parent / "last.ckpt"), str(toy1), metrics="museval", progress=False
    )
    (offline,) = (tmp_path / "wandb").glob("offline-run-*-trainrun1")
    expected = json.loads((ckpt_eval / "summary.json").read_text())
    # museval's own numbers: under keys of their own, beside the default backend's test/...
    sdr = logged_summary(offline, "test-museval/sdr/vocals")
    assert sdr == pytest.approx(expected["vocals"]["SDR"])
    assert logged_summary(offline, "test-museval/mse/accompaniment") == pytest.approx(
        expected["accompaniment"]["MSE"]
    )
    assert list((offline / "files" / "media" / "table").rglob("tracks*.table.json"))
    assert list((offline / "files" / "media" / "images").rglob("sdr_boxplot*.png"))


def logged_summary(offline_run: Path, key: str, wait_s: float = 60.0) -> float:
    """A summary value from an offline run's records (protobuf: key, then its JSON value).

    The W&B service writes the records after ``run.finish()`` returns, so wait for them.
    """
    (records,) = offline_run.glob("run-*.wandb")
    pattern = re.escape(key.encode()) + rb"\x82\x01.([-+0-9.eE]+)"
    deadline = time.monotonic() + wait_s
    while not (match := re.search(pattern, records.read_bytes(), re.DOTALL)):
        assert time.monotonic() < deadline, f"{key} not logged in {records}"
        time.sleep(0.2)
    return float(match[1])
