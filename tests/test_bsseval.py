"""ablation.bsseval against museval itself: same frames, same numbers, same JSON."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import museval
import numpy as np
import pytest
import torch

from ablation import bsseval
from ablation.bsseval import evaluate, fft, filters, score_track, toeplitz
from ablation.errors import AblationError

RATE = 44100
TOLERANCE_DB = 0.01
# Above this, a ratio compares an energy with float64 rounding noise (an
# estimate equal to a reference): museval's value is its own rounding, which no
# other implementation reproduces; ours must then be as large, not equal.
RESOLVED_DB = 100.0
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
REGRESSION_JSON = SHARED_DATA / "museval-regression" / "Music Delta - 80s Rock.json"
STEMS = ("vocals", "drums", "bass", "other")


def unresolved(values: np.ndarray) -> np.ndarray:
    """Where a metric is past what float64 resolves: +inf or above RESOLVED_DB. Which of
    the two a perfect estimate gets is rounding noise and differs between machines."""
    return np.isposinf(values) | (np.isfinite(values) & (values >= RESOLVED_DB))


def assert_same_metrics(ours, theirs) -> None:
    """Every frame of SDR, ISR, SIR and SAR within 0.01 dB, NaN where museval has NaN,
    and unresolved (inf or > 100 dB) where museval is."""
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape, (ours.shape, theirs.shape)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    np.testing.assert_array_equal(unresolved(ours), unresolved(theirs))
    resolved = np.isfinite(theirs) & (np.abs(theirs) < RESOLVED_DB)
    assert resolved.any(), "nothing to compare: every frame is NaN, inf or rounding noise"
    np.testing.assert_allclose(ours[resolved], theirs[resolved], rtol=0, atol=TOLERANCE_DB)


def toy_sources(nsrc: int, seconds: float, seed: int = 0, nchan: int = 2) -> np.ndarray:
    """Stereo sources of coloured noise with slow envelopes: ``(nsrc, samples, nchan)``."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    t = np.arange(n) / RATE
    sources = []
    for j in range(nsrc):
        shape = 1e-3 + 1 / (1 + (freqs / (200.0 * 4**j)) ** 2)
        noise = np.fft.irfft(np.fft.rfft(rng.standard_normal((nchan, n))) * shape, n)
        envelope = 0.5 + 0.5 * np.sin(2 * np.pi * (0.3 + j) * t) ** 2
        sources.append((noise * envelope).T)
    return np.stack(sources) / np.abs(np.stack(sources)).max()


def noisy(references: np.ndarray, seed: int = 1, leak: float = 0.1) -> np.ndarray:
    """Estimates that leak the other sources and add white noise."""
    rng = np.random.default_rng(seed)
    others = references.sum(0, keepdims=True) - references
    return references + leak * others + 0.02 * rng.standard_normal(references.shape)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """torch and BLAS on one thread: on a loaded two-core machine, a parallel
    region waits for a descheduled thread, which makes small ops ~20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        yield
    else:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


def both(references, estimates, **kwargs):
    return evaluate(references, estimates, **kwargs), museval.evaluate(
        references, estimates, **kwargs
    )


@pytest.fixture(scope="module")
def track(musdb_sample):
    """The real MUSDB18 preview: the musdb Track and its targets decoded once."""
    import musdb

    db = musdb.DB(root=str(musdb_sample), subsets="train")
    assert len(db) == 1, [t.name for t in db]
    stems = {name: db[0].targets[name].audio for name in (*STEMS, "accompaniment")}
    return db[0], stems


# ---------------------------------------------------------------- toy tracks


def test_toy_track_with_silent_stretches_matches_museval():
    references = toy_sources(2, 3.5)
    estimates = noisy(references)
    references[1, RATE : 2 * RATE] = 0  # frame 1: a silent reference
    estimates[0, 2 * RATE : 3 * RATE] = 0  # frame 2: a silent estimate
    ours, theirs = both(references, estimates)
    assert np.isnan(theirs).any(axis=(0, 1)).tolist() == [False, True, True]
    assert_same_metrics(ours, theirs)


@pytest.mark.parametrize(
    ("win", "hop"),
    [(RATE // 2, RATE // 4), (3 * RATE, 3 * RATE)],
    ids=["overlapping-frames", "one-frame-longer-than-signal"],
)
def test_toy_track_framing_matches_museval(win, hop):
    references = toy_sources(2, 2.3, seed=3).astype(np.float32)
    ours, theirs = both(references, noisy(references).astype(np.float32), win=win, hop=hop)
    assert_same_metrics(ours, theirs)


def test_toy_track_with_mono_source_matches_museval():
    """Identical channels make museval's normal equations singular: the dense path."""
    references = toy_sources(2, 2.0, seed=4)
    references[0, :, 1] = references[0, :, 0]
    ours, theirs = both(references, noisy(references))
    assert_same_metrics(ours, theirs)


def test_perfect_estimate_is_unresolved_like_museval():
    references = toy_sources(2, 1.5, seed=5)
    estimates = noisy(references)
    estimates[1] = references[1]
    ours, theirs = both(references, estimates)
    assert unresolved(theirs[0][1]).all() and unresolved(ours[0][1]).all()
    assert_same_metrics(ours, theirs)


# ---------------------------------------------------------------- real audio


@pytest.mark.parametrize("kind", ["mixture", "swapped"])
def test_real_audio_pair_matches_museval(track, kind):
    _, stems = track
    references = np.stack([stems["vocals"], stems["accompaniment"]])[:, : 2 * RATE]
    estimates = _estimates(references, kind)
    assert_same_metrics(*both(references, estimates))


def test_real_audio_four_stems_match_museval(track):
    _, stems = track
    references = np.stack([stems[name] for name in STEMS])[:, 2 * RATE : 4 * RATE]
    assert_same_metrics(*both(references, _estimates(references, "noisy")))


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["mixture", "noisy", "swapped"])
def test_real_audio_full_track_matches_museval(track, kind):
    _, stems = track
    references = np.stack([stems[name] for name in STEMS])
    assert_same_metrics(*both(references, _estimates(references, kind)))


def _estimates(references: np.ndarray, kind: str) -> np.ndarray:
    if kind == "mixture":
        return np.repeat(references.sum(0, keepdims=True), len(references), axis=0)
    if kind == "noisy":
        return references + 0.05 * np.random.default_rng(0).standard_normal(references.shape)
    return np.roll(references, 1, axis=0)  # each estimate is another source


# ---------------------------------------------------------------- museval's JSON


def test_reproduces_museval_regression_json(track):
    """museval's own regression reference (its test suite), scored by the torch backend."""
    if not REGRESSION_JSON.exists():
        pytest.skip(f"museval regression JSON not found at {REGRESSION_JSON}")
    music, stems = track
    np.random.seed(0)  # the README's recipe: vocals drawn first, then accompaniment
    estimates = {
        "vocals": np.random.random(music.audio.shape),
        "accompaniment": np.random.random(music.audio.shape),
    }
    references = {name: stems[name] for name in estimates}
    store = score_track(references, estimates, music.name, rate=music.rate)
    _assert_same_json(json.loads(store.json), json.loads(REGRESSION_JSON.read_text()))


def test_score_track_writes_eval_mus_track_json(track):
    """Both backends against ``museval.eval_mus_track`` itself, and museval's aggregation."""
    music, stems = track
    excerpt = {name: audio[: 3 * RATE] for name, audio in stems.items()}
    # eval_mus_track reads name, rate and targets[name].audio: a 3 s stand-in track.
    short = SimpleNamespace(
        name=music.name,
        rate=music.rate,
        targets={name: SimpleNamespace(audio=audio) for name, audio in excerpt.items()},
    )
    rng = np.random.default_rng(2)
    targets = ("vocals", "drums", "accompaniment")  # vocals/accompaniment scored apart
    estimates = {n: excerpt[n] + 0.1 * rng.standard_normal(excerpt[n].shape) for n in targets}
    expected = museval.eval_mus_track(short, estimates)
    stores = {
        backend: score_track(excerpt, estimates, music.name, backend=backend)
        for backend in ("torch", "museval")
    }
    assert stores["museval"].json == expected.json
    _assert_same_json(json.loads(stores["torch"].json), json.loads(expected.json))
    aggregates = []
    for store in (stores["torch"], expected):
        results = museval.EvalStore()
        results.add_track(store)
        aggregates.append(results.agg_frames_scores())
    assert aggregates[0].index.equals(aggregates[1].index)
    np.testing.assert_allclose(aggregates[0].values, aggregates[1].values, atol=TOLERANCE_DB)


def _assert_same_json(ours: dict, theirs: dict) -> None:
    assert [t["name"] for t in ours["targets"]] == [t["name"] for t in theirs["targets"]]
    for mine, reference in zip(ours["targets"], theirs["targets"], strict=True):
        assert [(f["time"], f["duration"]) for f in mine["frames"]] == [
            (f["time"], f["duration"]) for f in reference["frames"]
        ]
        for metric in ("SDR", "SIR", "SAR", "ISR"):
            assert_same_metrics(
                [float(f["metrics"][metric]) for f in mine["frames"]],
                [float(f["metrics"][metric]) for f in reference["frames"]],
            )


def test_score_track_needs_two_targets():
    references = dict(zip(("drums", "bass"), toy_sources(2, 1.0), strict=True))
    with pytest.warns(UserWarning, match="at least two targets"):
        store = score_track(references, {"drums": references["drums"]}, "toy")
    assert store.scores["targets"] == []


# ---------------------------------------------------------------- blocks, devices


def test_block_processing_gives_identical_results(monkeypatch):
    references = toy_sources(3, 3.2, seed=6)
    estimates = noisy(references)
    references[2, 2 * RATE : 3 * RATE] = 0
    whole = evaluate(references, estimates, block_frames=100)
    framewise = evaluate(references, estimates, block_frames=1)
    # Correlation blocks of 2048 samples, one at a time: many block edges.
    monkeypatch.setattr(filters, "CORR_FFT", 2048)
    monkeypatch.setattr(filters, "CORR_GROUP", 1)
    small = evaluate(references, estimates, block_frames=3)
    for blocked in (framewise, small):
        np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-9)
    assert np.isnan(whole).any()


def test_lagged_correlations_match_numpy(monkeypatch):
    monkeypatch.setattr(filters, "CORR_FFT", 256)
    monkeypatch.setattr(filters, "CORR_GROUP", 2)
    rng = np.random.default_rng(7)
    refs, ests = rng.standard_normal((2, 2, 1000, 2))
    corr = filters.lagged_correlations(
        torch.from_numpy(refs), torch.from_numpy(ests), 40, torch.device("cpu")
    ).numpy()
    lead = np.concatenate([refs, ests]).transpose(0, 2, 1).reshape(8, -1)
    base = lead[:4]
    # np.correlate(a, b, "full")[n - 1 + k] = sum_t a[t + k] b[t]
    expected = [[np.correlate(u, b, "full")[999 : 999 + 40] for b in base] for u in lead]
    np.testing.assert_allclose(corr, expected, rtol=0, atol=1e-10)


def test_block_levinson_solves_block_toeplitz_systems():
    rng = np.random.default_rng(8)
    signals = rng.standard_normal((3, 400))
    nlags = 30
    # Gram of delayed signals: symmetric positive definite block Toeplitz.
    lags = np.stack(
        [[[s[k:] @ b[: len(b) - k] for b in signals] for s in signals] for k in range(nlags)]
    )
    rhs = rng.standard_normal((nlags, 3, 2))
    solution, solved = toeplitz.block_levinson(lags[None], rhs[None])
    index = np.arange(nlags)
    full = np.concatenate([lags[:0:-1].swapaxes(-1, -2), lags])
    dense = full[index[None, :] - index[:, None] + nlags - 1].transpose(0, 2, 1, 3)
    dense = dense.reshape(3 * nlags, 3 * nlags)
    expected = np.linalg.solve(dense, rhs.reshape(-1, 2)).reshape(nlags, 3, 2)
    assert solved.all()
    np.testing.assert_allclose(solution[0], expected, rtol=1e-9, atol=1e-12)


def test_torch_fft_path_gives_identical_results(monkeypatch):
    """The path other devices take (torch.fft, any output layout) agrees with the CPU's."""
    references = toy_sources(3, 2.5, seed=9)
    estimates = noisy(references)
    expected = evaluate(references, estimates)
    monkeypatch.setattr(fft, "rfft", lambda x, n=None, dim=-1: torch.fft.rfft(x, n, dim=dim))
    np.testing.assert_allclose(evaluate(references, estimates), expected, rtol=0, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_gives_identical_results():
    references = toy_sources(3, 2.5, seed=10)
    estimates = noisy(references)
    np.testing.assert_allclose(
        evaluate(references, estimates, device="cuda"),
        evaluate(references, estimates),
        rtol=0,
        atol=1e-6,
    )


@pytest.mark.slow
def test_memory_stays_bounded_on_a_ten_minute_track():
    """Peak memory beyond the inputs stays small for 10 minutes of 4 stereo sources."""
    script = textwrap.dedent(
        """
        import resource
        import numpy as np
        import torch
        from ablation.bsseval import evaluate

        torch.set_num_threads(1)

        n, rng = 10 * 60 * 44100, np.random.default_rng(0)
        refs = np.empty((4, n, 2), np.float32)
        ests = np.empty((4, n, 2), np.float32)
        for start in range(0, n, 2**20):
            part = rng.standard_normal((4, min(2**20, n - start), 2), np.float32)
            refs[:, start : start + 2**20] = part
            ests[:, start : start + 2**20] = part + rng.standard_normal(part.shape, np.float32)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sdr = evaluate(refs, ests)[0]
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        assert sdr.shape == (4, 600), sdr.shape
        print((after - before) // 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=600
    )
    growth_mb = int(result.stdout.split()[-1])
    # The inputs are 1.7 GB; museval's whole-track FFTs alone would take 4 GB more.
    assert growth_mb < 500, f"peak memory grew by {growth_mb} MB"


# ---------------------------------------------------------------- errors


def test_rejects_what_museval_rejects():
    references = toy_sources(2, 1.0, seed=11)
    silent = references.copy()
    silent[1] = 0
    for function in (evaluate, museval.evaluate):
        with pytest.raises(ValueError, match="silent|all zeros"):
            function(silent, references)
    with pytest.raises(ValueError, match="mode='v3'"):
        evaluate(references, references, mode="v3")
    with pytest.raises(ValueError, match="same shape"):
        evaluate(references, references[:, :-5], padding=False)
    with pytest.raises(ValueError, match="win must be a positive whole number"):
        evaluate(references, references, win=0)


# ---------------------------------------------------------------- threads


def test_plain_call_computes_on_one_thread_and_restores_the_pools(monkeypatch):
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = {}
    framewise = bsseval.framewise_metrics

    def spy(*args):
        seen["torch"] = torch.get_num_threads()
        seen["blas"] = {pool["num_threads"] for pool in threadpool_info()}
        return framewise(*args)

    monkeypatch.setattr(bsseval, "framewise_metrics", spy)
    references = toy_sources(2, 2.0, seed=5)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with threadpool_limits(limits=2):
            blas_before = [pool["num_threads"] for pool in threadpool_info()]
            evaluate(references, noisy(references))
            assert seen == {"torch": 1, "blas": {1}}, seen
            assert torch.get_num_threads() == 2
            assert [pool["num_threads"] for pool in threadpool_info()] == blas_before
            evaluate(references, noisy(references), threads=None)
            assert seen["torch"] == 2, seen
    finally:
        torch.set_num_threads(before)


def test_thread_count_does_not_change_the_scores():
    references = toy_sources(3, 3.0, seed=6)
    estimates = noisy(references)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        one = evaluate(references, estimates)
        two = evaluate(references, estimates, threads=2)
    finally:
        torch.set_num_threads(before)
    for ours, theirs in zip(one, two, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)


def test_rejects_a_thread_count_below_one():
    references = toy_sources(2, 1.0, seed=7)
    with pytest.raises(AblationError, match="threads must be a positive whole number"):
        evaluate(references, references, threads=0)


def test_a_pool_loaded_after_the_first_limit_is_limited_too(monkeypatch):
    """The limiter's cached view of the loaded pools is renewed when modules arrive, so
    a BLAS pool loaded after an earlier evaluation (a later import) is limited as well."""
    from ablation import threads

    made = []
    monkeypatch.setattr(threads, "ThreadpoolController", lambda: made.append(1) or FakePools())
    threads._controller.cache_clear()
    with threads.limited_threads(1):
        pass
    with threads.limited_threads(1):
        pass
    assert len(made) == 1  # cached while nothing new is loaded
    monkeypatch.setitem(sys.modules, "a_new_extension_with_its_blas", object())
    with threads.limited_threads(1):
        pass
    assert len(made) == 2
    threads._controller.cache_clear()


class FakePools:
    def limit(self, limits: int):
        return contextlib.nullcontext()
