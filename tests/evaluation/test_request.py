"""Request checks and the output folder: default place, manifest, refusals that explain."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from evaluation_helpers import PAIR

from ablation.evaluation import METRICS, EvaluationError, evaluate_checkpoint
from ablation.tracks import DataError


def test_checkpoint_output_goes_beside_the_checkpoint_with_the_study_mse(ckpt_eval):
    assert ckpt_eval.name == "last-eval-test" and (ckpt_eval.parent / "last.ckpt").exists()
    manifest = json.loads((ckpt_eval / "evaluation.json").read_text())
    assert manifest["checkpoint"].endswith("last.ckpt") and manifest["baseline"] is None
    tracks = pd.read_csv(ckpt_eval / "tracks.csv")
    assert set(tracks.columns) >= {"track", "target", *METRICS, "MSE"}
    assert (tracks.MSE > 0).all()


def test_a_folder_of_another_evaluation_is_refused_untouched(mixture_eval, toy):
    before = {p: p.read_bytes() for p in mixture_eval.rglob("*") if p.is_file()}
    with pytest.raises(EvaluationError, match="another evaluation.*baseline='mixture'"):
        evaluate_checkpoint(
            None, str(toy), baseline="oracle-irm", targets=PAIR, out=str(mixture_eval)
        )
    assert before == {p: p.read_bytes() for p in mixture_eval.rglob("*") if p.is_file()}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda p: torch.save({"state_dict": {}}, p), "not a checkpoint of this suite"),
        (lambda p: p.write_text("not a checkpoint"), "not a readable PyTorch checkpoint"),
    ],
)
def test_foreign_checkpoints_are_refused(toy, tmp_path, content, message):
    path = tmp_path / "foreign.ckpt"
    content(path)
    with pytest.raises(EvaluationError, match=message):
        evaluate_checkpoint(str(path), str(toy), wandb_log=False)
    assert not (tmp_path / "foreign-eval-test").exists()


def test_missing_inputs_are_explained(toy, tmp_path):
    with pytest.raises(DataError, match="no tracks in .*train"):
        evaluate_checkpoint(None, str(toy), subset="train", baseline="mixture", wandb_log=False)
    with pytest.raises(EvaluationError, match="none.ckpt not found"):
        evaluate_checkpoint(str(tmp_path / "none.ckpt"), str(toy), wandb_log=False)
    with pytest.raises(EvaluationError, match="nothing to evaluate"):
        evaluate_checkpoint(None, str(toy), wandb_log=False)
    with pytest.raises(EvaluationError, match="expected one of"):
        evaluate_checkpoint(None, str(toy), baseline="oracle", wandb_log=False)


def test_unknown_baseline_target_set_is_refused(toy, tmp_path):
    with pytest.raises(EvaluationError, match=r"unknown target set '5stems'.*2stems"):
        evaluate_checkpoint(
            None,
            str(toy),
            baseline="mixture",
            targets="5stems",
            out=str(tmp_path / "out"),
            jobs=1,
            wandb_log=False,
        )
    assert not (tmp_path / "out").exists()  # refused before anything was written
