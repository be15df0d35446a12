"""Aggregation: every output file, MSE, median of medians as museval computes it."""

from __future__ import annotations

import json

import museval
import numpy as np
import pandas as pd
import pytest
import simplejson
import soundfile as sf
from evaluation_helpers import PAIR, stem


def test_evaluation_writes_every_file(mixture_eval, toy):
    names = sorted(p.name for p in (toy / "test").iterdir())
    for name in ["evaluation.json", "results.csv", "tracks.csv", "summary.json", "summary.md"]:
        assert (mixture_eval / name).stat().st_size > 0, name
    assert (mixture_eval / "sdr_boxplot.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.stem for p in (mixture_eval / "test").glob("*.json")) == names
    results = pd.read_csv(mixture_eval / "results.csv")
    assert list(results.columns) == ["track", "target", "metric", "time", "score"]
    # 2 tracks x 2 targets x 4 metrics x 2 one-second frames.
    assert len(results) == 2 * 2 * 4 * 2
    assert set(results.target) == set(PAIR)


def test_mixture_baseline_mse_is_the_energy_of_everything_else(mixture_eval, toy):
    # Estimate = mixture, so the error of a target is the rest of the mix.
    summary = json.loads((mixture_eval / "summary.json").read_text())
    for target in PAIR:
        squared, count = 0.0, 0
        for folder in sorted((toy / "test").iterdir()):
            mix = sf.read(folder / "mixture.wav", always_2d=True)[0]
            squared += np.sum((mix - stem(folder, target)) ** 2)
            count += mix.size
        assert summary[target]["MSE"] == pytest.approx(squared / count, rel=1e-9)


def test_summary_is_museval_median_of_medians(mixture_eval):
    store = museval.EvalStore()
    for path in sorted((mixture_eval / "test").glob("*.json")):
        data = simplejson.loads(path.read_text(), allow_nan=True)
        store.add_track(museval.aggregate.json2df(data, path.stem))
    expected = store.agg_frames_tracks_scores()
    summary = json.loads((mixture_eval / "summary.json").read_text())
    for (target, metric), value in expected.items():
        assert summary[target][metric] == pytest.approx(value, abs=1e-9), (target, metric)
    assert (
        "scored together: {vocals, accompaniment} (all kept)"
        in (mixture_eval / "summary.md").read_text()
    )
