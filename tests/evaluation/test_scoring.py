"""Scoring one track: equality with museval called directly (both backends, toy tracks and the real
MUSDB18 preview), silent references as NaN frames. Tracks are 2 s (two BSS Eval frames) so the
default run stays short."""

from __future__ import annotations

import json
import shutil

import musdb
import museval
import numpy as np
import pytest
import simplejson
import soundfile as sf
import torch
from evaluation_helpers import (
    FOUR,
    PAIR,
    RATE,
    assert_frames_match,
    evaluate_pair,
    frames,
    metric_array,
    toy_track,
    track_json,
    write_checkpoint,
)

from ablation.constants import SOURCES
from ablation.evaluation import evaluate_checkpoint


def test_mixture_baseline_equals_museval_on_the_mixture(mixture_eval, toy):
    track = toy_track(toy)
    pair = museval.eval_mus_track(track, dict.fromkeys(PAIR, track.audio))
    ours = frames(track_json(mixture_eval, track.name))
    for target in PAIR:
        assert_frames_match(ours[target], frames(pair.json)[target])


@pytest.mark.slow
def test_four_stem_mixture_baseline_equals_museval_on_the_mixture(four_stem_mixture_eval, toy1):
    track = toy_track(toy1)
    four = museval.eval_mus_track(track, dict.fromkeys(FOUR, track.audio))
    pair = museval.eval_mus_track(track, dict.fromkeys(PAIR, track.audio))
    ours = frames(track_json(four_stem_mixture_eval, track.name))
    for target in FOUR:
        assert_frames_match(ours[target], frames(four.json)[target])
    assert_frames_match(ours["accompaniment"], frames(pair.json)["accompaniment"])


def test_checkpoint_scores_equal_museval_on_the_same_estimates(ckpt_eval, toy1):
    from ablation.checkpoint import load_net
    from ablation.separate import separate

    track = toy_track(toy1)
    net = load_net(ckpt_eval.parent / "last.ckpt")
    mix = torch.as_tensor(track.audio.T, dtype=torch.float32)
    estimates = separate(net, mix, segment_samples=round(net.segment_seconds * RATE))
    est = {s: estimates[i].T.double().numpy() for i, s in enumerate(net.source_names)}
    est["accompaniment"] = est["drums"] + est["bass"] + est["other"]
    four = museval.eval_mus_track(track, {s: est[s] for s in FOUR})
    pair = museval.eval_mus_track(track, {s: est[s] for s in PAIR})
    ours = frames(track_json(ckpt_eval, track.name))
    # museval rounds to 5 decimals: a 1e-5 dB step is a rounding boundary, not a difference
    for target in FOUR:
        np.testing.assert_allclose(
            metric_array(ours[target]), metric_array(frames(four.json)[target]), atol=2e-5, rtol=0
        )
    np.testing.assert_allclose(
        metric_array(ours["accompaniment"]),
        metric_array(frames(pair.json)["accompaniment"]),
        atol=2e-5,
        rtol=0,
    )
    # museval's eval_mus_track would report the pair's vocals; ours are the four-stem ones.
    pair_vocals = metric_array(frames(pair.json)["vocals"])
    assert np.abs(metric_array(ours["vocals"]) - pair_vocals).max() > 0.01


def test_silent_references_give_nan_frames_counted_not_errors(toy, tmp_path):
    root = tmp_path / "silent"
    shutil.copytree(toy, root)
    partly, wholly = sorted((root / "test").iterdir())
    for folder, silent in ((partly, slice(0, RATE)), (wholly, slice(None))):
        vocals, _ = sf.read(folder / "vocals.wav", always_2d=True)
        vocals[silent] = 0
        sf.write(folder / "vocals.wav", vocals, RATE, subtype="PCM_16")
        # the stored mixture stays the sum of the stems (evaluation checks it)
        stems = [sf.read(folder / f"{s}.wav", always_2d=True)[0] for s in SOURCES]
        sf.write(folder / "mixture.wav", sum(stems), RATE, subtype="PCM_16")
    with pytest.warns(UserWarning, match="estimate of vocals is silent throughout"):
        out = evaluate_pair(root, tmp_path / "o")
    ours = frames(track_json(out, wholly.name))
    assert all(np.isnan(metric_array(ours[t])).all() for t in PAIR)
    partial = frames(track_json(out, partly.name))
    for target in PAIR:  # museval leaves a frame with any silent source unscored for all
        assert np.isnan(metric_array(partial[target])[0]).all()
        assert not np.isnan(metric_array(partial[target])[1]).any()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["vocals"]["SDR"] == pytest.approx(float(partial["vocals"][1]["metrics"]["SDR"]))
    assert "vocals: 3 of 4" in (out / "summary.md").read_text()


def test_real_preview_mixture_baseline_matches_museval(musdb_sample, tmp_path):
    out = evaluate_pair(musdb_sample, tmp_path / "o", subset="train")
    track = musdb.DB(root=str(musdb_sample), subsets="train").tracks[0]
    pair = museval.eval_mus_track(track, dict.fromkeys(PAIR, track.audio))
    ours = simplejson.loads((out / "train" / f"{track.name}.json").read_text(), allow_nan=True)
    for target in PAIR:
        assert_frames_match(frames(ours)[target], frames(pair.json)[target])
    assert json.loads((out / "evaluation.json").read_text())["is_wav"] is False
    assert set(json.loads((out / "summary.json").read_text())) == set(PAIR)


@pytest.mark.slow
def test_real_preview_checkpoint_scores_equal_museval(musdb_sample, tmp_path):
    from ablation.checkpoint import load_net
    from ablation.separate import separate

    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    out = evaluate_checkpoint(str(ckpt), str(musdb_sample), subset="train", jobs=1, wandb_log=False)
    track = musdb.DB(root=str(musdb_sample), subsets="train").tracks[0]
    net = load_net(ckpt)
    estimates = separate(
        net, torch.as_tensor(track.audio.T, dtype=torch.float32), round(net.segment_seconds * RATE)
    )
    est = {s: estimates[i].T.double().numpy() for i, s in enumerate(net.source_names)}
    four = museval.eval_mus_track(track, {s: est[s] for s in FOUR})
    ours = frames(
        simplejson.loads((out / "train" / f"{track.name}.json").read_text(), allow_nan=True)
    )
    for target in FOUR:
        assert_frames_match(ours[target], frames(four.json)[target])


@pytest.mark.slow
def test_museval_backend_gives_museval_exactly(toy1, tmp_path):
    out = evaluate_checkpoint(
        None,
        str(toy1),
        baseline="mixture",
        out=str(tmp_path / "m"),
        metrics="museval",
        jobs=1,
        wandb_log=False,
    )
    track = toy_track(toy1)
    four = museval.eval_mus_track(track, dict.fromkeys(FOUR, track.audio))
    ours = frames(track_json(out, track.name))
    for target in FOUR:
        assert ours[target] == frames(four.json)[target]
