"""SiSEC-exact evaluation: files, equality with museval called directly, closed forms,
resume, parallel = serial, baselines, bad input, W&B. Tracks are 2 s (two BSS Eval
frames) so the default run stays short."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import musdb
import museval
import numpy as np
import pandas as pd
import pytest
import simplejson
import soundfile as sf
import torch

from ablation import evaluate as ev
from ablation.constants import SOURCES, WANDB_PROJECT
from ablation.evaluate import EvaluationError, evaluate_checkpoint
from ablation.files import write_text
from datamodules import make_toy_dataset
from datamodules.layout import DataError

RATE = 44100
FOUR = ("vocals", "drums", "bass", "other")
PAIR = ("vocals", "accompaniment")


# ---- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    """Two 2 s test tracks (two BSS Eval frames each) in the MUSDB18-HQ layout."""
    root = tmp_path_factory.mktemp("toy")
    return make_toy_dataset(root, n_train=0, n_test=2, duration=2.0, seed=3, progress=False)


@pytest.fixture(scope="module")
def toy1(tmp_path_factory) -> Path:
    """One 2 s test track: four-stem scoring costs the most, so it gets one track."""
    root = tmp_path_factory.mktemp("toy1")
    return make_toy_dataset(root, n_train=0, n_test=1, duration=2.0, seed=4, progress=False)


def write_checkpoint(
    path: Path, seed: int = 0, epoch: int = 0, step: int = 3, sample_rate: int = 44100
) -> Path:
    """A checkpoint as Lightning writes it for WaveUNetModule (no optimizer state)."""
    from lightning_modules import WaveUNetModule

    torch.manual_seed(seed)
    module = WaveUNetModule(depth=2, filters=4, segment=1.0, sample_rate=sample_rate)
    checkpoint = {
        "epoch": epoch,
        "global_step": step,
        "hyper_parameters": dict(module.hparams),
        "state_dict": module.state_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(checkpoint, path)
    return path


def evaluate_pair(root: Path, out: Path, **options) -> Path:
    """A baseline (the mixture unless told) on the (vocals, accompaniment) pair: the
    cheapest scoring."""
    options = {"baseline": "mixture", "jobs": 1, "wandb_log": False, "progress": False} | options
    return evaluate_checkpoint(None, str(root), targets="2stems", out=str(out), **options)


@pytest.fixture(scope="module")
def mixture_eval(toy, tmp_path_factory) -> Path:
    """The mixture baseline on the toy test set, serial, without W&B."""
    return evaluate_pair(toy, tmp_path_factory.mktemp("eval") / "mixture")


@pytest.fixture(scope="module")
def ckpt_eval(toy1, tmp_path_factory) -> Path:
    """A tiny four-stem checkpoint evaluated on one toy track (default output folder), with
    museval itself computing BSS Eval, so that equality with museval can be exact."""
    run = tmp_path_factory.mktemp("runs") / "sweep" / "1d-depth2-seed0"
    ckpt = write_checkpoint(run / "checkpoints" / "last.ckpt")
    return evaluate_checkpoint(
        str(ckpt), str(toy1), metrics="museval", jobs=1, wandb_log=False, progress=False
    )


def toy_track(root: Path, index: int = 0):
    return musdb.DB(root=str(root), is_wav=True, subsets="test").tracks[index]


def frames(store_json: str | dict) -> dict[str, list[dict]]:
    data = (
        simplejson.loads(store_json, allow_nan=True) if isinstance(store_json, str) else store_json
    )
    return {t["name"]: t["frames"] for t in data["targets"]}


def metric_array(target_frames: list[dict]) -> np.ndarray:
    return np.array([[float(f["metrics"][m]) for m in ev.METRICS] for f in target_frames])


def assert_frames_match(ours: list[dict], theirs: list[dict]) -> None:
    # The torch backend solves museval's ill-conditioned normal equations another way:
    # equal well below the 0.01 dB that results are reported to, not to the last digit.
    assert [f["time"] for f in ours] == [f["time"] for f in theirs]
    np.testing.assert_allclose(metric_array(ours), metric_array(theirs), atol=1e-2, rtol=0)


def track_json(out: Path, name: str) -> dict:
    return simplejson.loads((out / "test" / f"{name}.json").read_text(), allow_nan=True)


# ---- scoring groups ----------------------------------------------------------------------


def test_four_stems_keep_their_vocals_and_score_accompaniment_apart():
    groups = ev.scoring_groups(SOURCES)
    assert groups[0].together == FOUR and groups[0].kept == FOUR
    assert groups[1].together == ("vocals", "accompaniment")
    assert groups[1].kept == ("accompaniment",)


@pytest.mark.parametrize(
    ("sources", "together", "kept"),
    [
        (("vocals", "accompaniment"), ("vocals", "accompaniment"), ("vocals", "accompaniment")),
        (("vocals",), ("vocals", "accompaniment"), ("vocals", "accompaniment")),
        (("bass",), ("bass", "rest"), ("bass",)),
        (("bass", "vocals"), ("vocals", "bass"), ("vocals", "bass")),
    ],
)
def test_other_target_sets_are_scored_in_one_group(sources, together, kept):
    (group,) = ev.scoring_groups(sources)
    assert (group.together, group.kept) == (together, kept)


def test_unknown_targets_are_refused():
    with pytest.raises(EvaluationError, match="piano"):
        ev.scoring_groups(("vocals", "piano"))


# ---- outputs and equality with museval ------------------------------------------------


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


def test_mixture_baseline_equals_museval_on_the_mixture(mixture_eval, toy):
    track = toy_track(toy)
    pair = museval.eval_mus_track(track, dict.fromkeys(PAIR, track.audio))
    ours = frames(track_json(mixture_eval, track.name))
    for target in PAIR:
        assert_frames_match(ours[target], frames(pair.json)[target])


@pytest.fixture(scope="module")
def four_stem_mixture_eval(toy1, tmp_path_factory) -> Path:
    """The four-stem mixture baseline on one toy track (slow tests only)."""
    out = tmp_path_factory.mktemp("eval") / "four"
    return evaluate_checkpoint(None, str(toy1), baseline="mixture", out=str(out), wandb_log=False)


@pytest.mark.slow
def test_four_stem_mixture_baseline_equals_museval_on_the_mixture(four_stem_mixture_eval, toy1):
    track = toy_track(toy1)
    four = museval.eval_mus_track(track, dict.fromkeys(FOUR, track.audio))
    pair = museval.eval_mus_track(track, dict.fromkeys(PAIR, track.audio))
    ours = frames(track_json(four_stem_mixture_eval, track.name))
    for target in FOUR:
        assert_frames_match(ours[target], frames(four.json)[target])
    assert_frames_match(ours["accompaniment"], frames(pair.json)["accompaniment"])


def stem(folder: Path, target: str) -> np.ndarray:
    names = ("drums", "bass", "other") if target == "accompaniment" else (target,)
    return sum(sf.read(folder / f"{name}.wav", always_2d=True)[0] for name in names)


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


def test_checkpoint_scores_equal_museval_on_the_same_estimates(ckpt_eval, toy1):
    from ablation.separate import load_separator, separate

    track = toy_track(toy1)
    net, info = load_separator(ckpt_eval.parent / "last.ckpt")
    mix = torch.as_tensor(track.audio.T, dtype=torch.float32)
    estimates = separate(net, mix, segment=round(info.segment * RATE))
    est = {s: estimates[i].T.double().numpy() for i, s in enumerate(info.sources)}
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


def test_checkpoint_output_goes_beside_the_checkpoint_with_the_study_mse(ckpt_eval):
    assert ckpt_eval.name == "last-eval-test" and (ckpt_eval.parent / "last.ckpt").exists()
    manifest = json.loads((ckpt_eval / "evaluation.json").read_text())
    assert manifest["checkpoint"].endswith("last.ckpt") and manifest["baseline"] is None
    tracks = pd.read_csv(ckpt_eval / "tracks.csv")
    assert set(tracks.columns) >= {"track", "target", *ev.METRICS, "MSE"}
    assert (tracks.MSE > 0).all()


# ---- resume, refusal, parallel ------------------------------------------------------------


def test_truncated_track_files_are_never_trusted(tmp_path):
    path = tmp_path / "track.json"
    store = museval.TrackStore("t")
    store.add_target("vocals", dict.fromkeys(ev.METRICS, [1.0]))
    store.scores["mse"] = {"vocals": 0.1}
    write_text(path, store.json)
    assert ev.read_track_file(path, ["vocals"]) is not None
    path.write_text(store.json[: len(store.json) // 2])
    with pytest.warns(UserWarning, match="not valid JSON"):
        assert ev.read_track_file(path, ["vocals"]) is None
    with pytest.warns(UserWarning, match="expected"):
        write_text(path, store.json)
        assert ev.read_track_file(path, ["vocals", "drums"]) is None


def test_a_folder_of_another_evaluation_is_refused_untouched(mixture_eval, toy):
    before = {p: p.read_bytes() for p in mixture_eval.rglob("*") if p.is_file()}
    with pytest.raises(EvaluationError, match="another evaluation.*baseline='mixture'"):
        evaluate_checkpoint(
            None, str(toy), baseline="oracle-irm", targets=PAIR, out=str(mixture_eval)
        )
    assert before == {p: p.read_bytes() for p in mixture_eval.rglob("*") if p.is_file()}


def test_parallel_run_writes_the_files_of_the_serial_run(mixture_eval, toy, tmp_path):
    out = evaluate_pair(toy, tmp_path / "p", jobs=2)
    for path in sorted((mixture_eval / "test").glob("*.json")):
        assert (out / "test" / path.name).read_text() == path.read_text()
    for name in ["results.csv", "tracks.csv", "summary.json"]:
        assert (out / name).read_text() == (mixture_eval / name).read_text()


# ---- oracle ratio mask ------------------------------------------------------------------


def test_oracle_irm_masks_sum_to_the_mixture_and_isolate_a_lone_source():
    rng = np.random.default_rng(0)
    n = RATE // 2
    refs = {s: rng.standard_normal((n, 2)) * (i + 1) for i, s in enumerate(FOUR)}
    mixture = sum(refs.values())
    estimates = ev.oracle_irm(mixture, refs)
    np.testing.assert_allclose(sum(estimates.values()), mixture, atol=1e-4)
    lone = {"vocals": refs["vocals"], "bass": np.zeros((n, 2))}
    alone = ev.oracle_irm(refs["vocals"], lone)
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


# ---- bad input ----------------------------------------------------------------------------


def test_silent_references_give_nan_frames_counted_not_errors(toy, tmp_path):
    root = tmp_path / "silent"
    shutil.copytree(toy, root)
    partly, wholly = sorted((root / "test").iterdir())
    for folder, silent in ((partly, slice(0, RATE)), (wholly, slice(None))):
        vocals, _ = sf.read(folder / "vocals.wav", always_2d=True)
        vocals[silent] = 0
        sf.write(folder / "vocals.wav", vocals, RATE, subtype="PCM_16")
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
    with pytest.raises(EvaluationError, match="does not exist"):
        evaluate_checkpoint(str(tmp_path / "none.ckpt"), str(toy), wandb_log=False)
    with pytest.raises(EvaluationError, match="nothing to evaluate"):
        evaluate_checkpoint(None, str(toy), wandb_log=False)
    with pytest.raises(EvaluationError, match="expected one of"):
        evaluate_checkpoint(None, str(toy), baseline="oracle", wandb_log=False)


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
    real = ev.score_track_file
    monkeypatch.setattr(
        ev, "score_track_file", lambda plan, name: calls.append(name) or real(plan, name)
    )
    evaluate_pair(root, out)
    assert calls == [bad.name]
    assert (out / "test" / f"{good.name}.json").read_text() == kept
    assert sorted(pd.read_csv(out / "tracks.csv").track.unique()) == [good.name, bad.name]


# ---- W&B ----------------------------------------------------------------------------------


def test_find_wandb_run_reads_the_runners_file_or_the_run_folders(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    run = tmp_path / "runs" / "s" / "r"
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    assert ev.find_wandb_run(str(ckpt)).id is None
    (run / "wandb" / "offline-run-20250101_000000-abc123").mkdir(parents=True)
    found = ev.find_wandb_run(str(ckpt))
    assert (found.id, found.project, found.folder) == ("abc123", WANDB_PROJECT, run)
    (run / "wandb_run.json").write_text(json.dumps({"id": "j1", "project": "p", "entity": "e"}))
    found = ev.find_wandb_run(str(ckpt))
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
    assert logged_summary(offline, "test/sdr/vocals") == pytest.approx(expected["vocals"]["SDR"])
    assert logged_summary(offline, "test/mse/accompaniment") == pytest.approx(
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


# ---- real MUSDB18 preview (compressed stems) -----------------------------------------------


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
    from ablation.separate import load_separator, separate

    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    out = evaluate_checkpoint(str(ckpt), str(musdb_sample), subset="train", jobs=1, wandb_log=False)
    track = musdb.DB(root=str(musdb_sample), subsets="train").tracks[0]
    net, info = load_separator(ckpt)
    estimates = separate(
        net, torch.as_tensor(track.audio.T, dtype=torch.float32), round(info.segment * RATE)
    )
    est = {s: estimates[i].T.double().numpy() for i, s in enumerate(info.sources)}
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


def test_a_net_at_another_rate_separates_at_its_rate_and_is_scored_at_the_tracks(toy1, tmp_path):
    import torchaudio

    from ablation.evaluate import _separate, load_track, prepare
    from ablation.separate import load_separator, separate

    ckpt = write_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt", sample_rate=11025)
    plan, _ = prepare(str(ckpt), str(toy1), "test", str(tmp_path / "out"), None, "torch", "cpu")
    assert (plan.sample_rate, plan.net_rate, plan.segment) == (44100, 11025, 11025)
    mixture = load_track(toy_track(toy1), True)  # (samples, channels) at 44.1 kHz
    estimates = _separate(plan, mixture)
    net, _ = load_separator(str(ckpt))
    low = torchaudio.functional.resample(torch.tensor(mixture.T, dtype=torch.float32), 44100, 11025)
    expected = torchaudio.functional.resample(separate(net, low, segment=11025), 11025, 44100)
    for i, name in enumerate(plan.sources):
        assert estimates[name].shape == mixture.shape
        np.testing.assert_allclose(
            estimates[name], expected[i, :, : len(mixture)].T.numpy(), rtol=1e-4, atol=1e-5
        )


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
