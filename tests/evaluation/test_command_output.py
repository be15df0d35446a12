"""Issue 24, item 3: ``make eval`` ends with the score table, says what it skipped and
why, reads by default the data the checkpoint trained on, and logs each setting under
W&B keys of its own."""

from __future__ import annotations

import json
from dataclasses import replace

import pandas as pd
import pytest
import yaml

from ablation.cli import main
from ablation.evaluation import Plan, Results, log_to_wandb


def evaluate_again(ckpt_eval, *flags: str) -> None:
    """``ablation eval`` of the fixture's checkpoint, which is scored already."""
    ckpt = ckpt_eval.parent / "last.ckpt"
    main(["eval", "--ckpt", str(ckpt), "--metrics", "museval", "--no-wandb", *flags])


def test_eval_ends_with_the_scores_and_says_what_it_skipped(ckpt_eval, toy1, capsys):
    evaluate_again(ckpt_eval, "--root", str(toy1))
    out = capsys.readouterr().out
    assert f"skipped all 1 test tracks of {ckpt_eval}: scored already" in out
    summary = json.loads((ckpt_eval / "summary.json").read_text())
    vocals = next(line for line in out.splitlines() if line.startswith("| vocals"))
    cells = [c.strip() for c in vocals.strip("|").split("|")]
    assert cells == [
        "vocals",
        *(f"{summary['vocals'][m]:.2f}" for m in ("SDR", "SIR", "ISR", "SAR")),
    ]


def test_eval_reads_the_data_the_checkpoint_trained_on(ckpt_eval, toy1, capsys, monkeypatch):
    monkeypatch.delenv("MUSDB_PATH", raising=False)
    config = ckpt_eval.parent.parent / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"root": str(toy1)}}))
    try:
        evaluate_again(ckpt_eval)
    finally:
        config.unlink()
    lines = capsys.readouterr().out.splitlines()
    said = [line for line in lines if "not given" in line]
    assert said == [f"ROOT (--root) not given: evaluating on {toy1}, the data "
                    f"{config.parent.name} trained on (its data.json or config.yaml)"]  # fmt: skip
    assert any(line.startswith("| vocals") for line in lines)


def baseline_plan(out) -> Plan:
    """The plan of a mixture baseline on one stem, written to ``out``."""
    return Plan(root=str(out), is_wav=True, subset="test", out=str(out), ckpt=None,
                baseline="mixture", sources=("vocals",), stems=("vocals",), groups=(),
                sample_rate=44100, net_rate=44100, segment_samples=None, metrics="torch",
                device="cpu")  # fmt: skip


class FakeRun:
    """A W&B run that keeps what is put in its summary."""

    def __init__(self, summary: dict):
        self.summary, self.id = summary, "fake"

    def log(self, data: dict) -> None:
        pass

    def finish(self) -> None:
        pass


@pytest.fixture
def logged(monkeypatch) -> dict:
    import wandb

    summary: dict = {}
    monkeypatch.setattr(wandb, "init", lambda **kwargs: FakeRun(summary))
    monkeypatch.setattr(wandb, "Table", lambda **kwargs: None)
    monkeypatch.setattr(wandb, "Image", lambda path: None)
    return summary


def test_evaluations_with_other_settings_never_overwrite_each_others_keys(tmp_path, logged):
    plan = baseline_plan(tmp_path)
    median = pd.DataFrame({m: [1.0] for m in ("SDR", "SIR", "ISR", "SAR", "MSE")}, ["vocals"])
    results = Results(pd.DataFrame(), pd.DataFrame(), median, median, {}, 1.0)
    settings = [{}, {"shifts": 2}, {"metrics": "museval"}, {"shifts": 2, "metrics": "museval"}]
    for n, setting in enumerate(settings):
        log_to_wandb(replace(plan, **setting), Results(**{**vars(results), "median": median + n}))
    assert logged["test/sdr/vocals"] == 1.0  # the plain evaluation keeps its keys
    sdr = {k: v for k, v in logged.items() if k.endswith("/sdr/vocals")}
    assert sorted(sdr.values()) == [1.0, 2.0, 3.0, 4.0]  # one key each, none overwritten


def test_a_resumed_evaluation_says_how_many_tracks_it_skips(tmp_path):
    from ablation.evaluation.entry import skipped_tracks

    plan = baseline_plan(tmp_path / "e")
    said = skipped_tracks(plan, ["a", "b", "c"], ["c"])
    assert said.startswith(f"skipped 2 of 3 test tracks of {tmp_path / 'e'}: scored already")
    assert said.endswith("scoring the other 1")
    assert skipped_tracks(plan, ["a", "b"], ["a", "b"]) is None  # nothing skipped: no word
