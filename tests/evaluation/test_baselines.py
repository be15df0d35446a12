"""Baselines: the oracle ratio mask and the best constant gain against the mixture floor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from evaluation_helpers import FOUR, PAIR, RATE, evaluate_pair, stem

from ablation.evaluation import evaluate_checkpoint, oracle_irm


def test_oracle_irm_masks_sum_to_the_mixture_and_isolate_a_lone_source():
    rng = np.random.default_rng(0)
    n = RATE // 2
    refs = {s: rng.standard_normal((n, 2)) * (i + 1) for i, s in enumerate(FOUR)}
    mixture = sum(refs.values())
    estimates = oracle_irm(mixture, refs)
    np.testing.assert_allclose(sum(estimates.values()), mixture, atol=1e-4)
    lone = {"vocals": refs["vocals"], "bass": np.zeros((n, 2))}
    alone = oracle_irm(refs["vocals"], lone)
    np.testing.assert_allclose(alone["vocals"], refs["vocals"], atol=1e-4)
    assert np.abs(alone["bass"]).max() == 0


def test_oracle_irm_beats_the_mixture(mixture_eval, toy, tmp_path):
    out = evaluate_checkpoint(
        None, str(toy), baseline="oracle-irm", targets="2stems", out=str(tmp_path / "irm"),
        jobs=1, wandb_log=False, progress=False,
    )  # fmt: skip
    irm = json.loads((out / "summary.json").read_text())
    floor = json.loads((mixture_eval / "summary.json").read_text())
    for target in PAIR:
        assert irm[target]["SDR"] > floor[target]["SDR"] + 3, target
        assert irm[target]["MSE"] < floor[target]["MSE"], target


def test_gain_baseline_mse_is_the_least_squares_scaling(mixture_eval, toy, tmp_path):
    out = evaluate_pair(toy, tmp_path / "gain", baseline="gain")
    summary = json.loads((out / "summary.json").read_text())
    floor = json.loads((mixture_eval / "summary.json").read_text())
    for target in PAIR:
        squared, count = 0.0, 0
        for folder in sorted((toy / "test").iterdir()):
            mix = sf.read(folder / "mixture.wav", always_2d=True)[0]
            ref = stem(folder, target)
            gain = np.sum(ref * mix) / np.sum(mix * mix)
            squared += np.sum((gain * mix - ref) ** 2)
            count += mix.size
        assert summary[target]["MSE"] == pytest.approx(squared / count, rel=1e-9)
        assert summary[target]["MSE"] < floor[target]["MSE"]


@pytest.mark.slow
def test_four_stem_oracle_irm_beats_the_mixture_on_every_target(
    four_stem_mixture_eval, toy1, tmp_path
):
    out = evaluate_checkpoint(
        None, str(toy1), baseline="oracle-irm", out=str(tmp_path / "irm"), jobs=1, wandb_log=False
    )
    irm = json.loads((out / "summary.json").read_text())
    floor = json.loads((four_stem_mixture_eval / "summary.json").read_text())
    for target in (*FOUR, "accompaniment"):
        assert irm[target]["SDR"] > floor[target]["SDR"] + 3, target
        assert irm[target]["MSE"] < floor[target]["MSE"], target
