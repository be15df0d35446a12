"""The Wilcoxon signed-rank tests on per-track SDR, seeds averaged per track."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import bootstrap, false_discovery_control, wilcoxon

from ablation.report.markdown import too_few_tracks
from ablation.report.significance import ONE_SEED, two_way_pairs, wilcoxon_pairs

from .sweep_folders import SDR, TARGETS


def test_wilcoxon_p_values_pair_tracks_with_seeds_averaged(report):
    path, _ = report
    pairs = pd.read_csv(path.parent / "significance.csv")
    assert set(zip(pairs.a, pairs.b, strict=True)) == {("1d depth2", "1d depth3")}
    for i, target in enumerate(TARGETS):
        depth2 = (SDR["1d-depth2-seed0"][:, i] + SDR["1d-depth2-seed1"][:, i]) / 2
        expected = wilcoxon(depth2, SDR["1d-depth3-seed0"][:, i]).pvalue
        (p,) = pairs[pairs.target == target].p
        assert p == pytest.approx(expected)
    assert "1d depth2 vs 1d depth3 (n=8)" in path.read_text()


def constructed_tracks(n: int, shifts: dict[str, float]) -> pd.DataFrame:
    """Per-track SDR of three configurations over ``n`` tracks and two targets."""
    rng = np.random.default_rng(3)
    base = rng.normal(4.0, 1.0, size=(n, 2))
    rows = [
        (name, name, f"t{k}", target, base[k, i] + shift + rng.normal(0, 0.3))
        for name, shift in shifts.items()
        for k in range(n)
        for i, target in enumerate(("vocals", "drums"))
    ]
    return pd.DataFrame(rows, columns=["configuration", "run", "track", "target", "SDR"])


def test_corrected_p_effect_size_and_interval_agree_with_scipy():
    shifts = {"a": 0.0, "b": 1.0, "c": 0.1}
    tracks = constructed_tracks(12, shifts)
    pairs = wilcoxon_pairs(tracks, list(shifts))
    assert len(pairs) == 3 * 2
    raw = []
    for row in pairs.itertuples():
        x = tracks[(tracks.configuration == row.a) & (tracks.target == row.target)].SDR
        y = tracks[(tracks.configuration == row.b) & (tracks.target == row.target)].SDR
        diff = x.to_numpy() - y.to_numpy()
        raw.append(wilcoxon(x.to_numpy(), y.to_numpy()).pvalue)
        assert row.p == pytest.approx(raw[-1])
        assert row._5 == pytest.approx(np.median(diff))  # median difference
        interval = bootstrap(
            (diff,), np.median, n_resamples=2000, method="percentile",
            rng=np.random.default_rng(0),
        ).confidence_interval  # fmt: skip
        assert (row._6, row._7) == pytest.approx((interval.low, interval.high))
        assert row._6 <= row._5 <= row._7
    np.testing.assert_allclose(pairs["p BH"], false_discovery_control(np.array(raw)))
    assert (pairs["p BH"] >= pairs.p - 1e-12).all()
    # a 1 dB shift over 12 tracks survives the correction; 0.1 dB against noise does not
    a_b = pairs[(pairs.a == "a") & (pairs.b == "b")]
    assert (a_b["p BH"] < 0.05).all()


def test_too_few_tracks_are_said_instead_of_p_values():
    tracks = constructed_tracks(3, {"a": 0.0, "b": 1.0})
    pairs = wilcoxon_pairs(tracks, ["a", "b"])
    assert (pairs["smallest p"] == 0.25).all()
    text = too_few_tracks(pairs)
    assert text and "3 paired tracks" in text and "0.25" in text
    assert (
        too_few_tracks(wilcoxon_pairs(constructed_tracks(8, {"a": 0, "b": 1}), ["a", "b"])) is None
    )


def test_the_test_over_seeds_pairs_seed_k_with_seed_k_as_scipy_does():
    from scipy.stats import ttest_rel

    from ablation.report.significance import seed_pairs

    rng = np.random.default_rng(5)
    rows, seeds = [], {}
    for name, shift in {"a": 0.0, "b": 0.8, "c": 0.05}.items():
        for seed in range(3):
            run = f"{name}-seed{seed}"
            seeds[run] = seed
            for k in range(4):
                sdr = 4.0 + shift + 0.3 * seed + rng.normal(0, 0.1)  # seed k shared by all
                rows.append((name, run, f"t{k}", "vocals", sdr))
    rows.append(("a", "a-seed0", "t9", "vocals", 40.0))  # a track only "a" scored: left out
    tracks = pd.DataFrame(rows, columns=["configuration", "run", "track", "target", "SDR"])
    pairs = seed_pairs(tracks, seeds, ["a", "b", "c"])
    assert len(pairs) == 3 and (pairs.seeds == 3).all()
    raw = []
    for row in pairs.itertuples():
        per_seed = [
            [np.mean([r[4] for r in rows if r[0] == c and seeds[r[1]] == s and r[2] != "t9"])
             for s in range(3)]
            for c in (row.a, row.b)
        ]  # fmt: skip
        raw.append(ttest_rel(*per_seed).pvalue)
        assert row.p == pytest.approx(raw[-1])
        assert row._5 == pytest.approx(np.mean(np.subtract(*per_seed)))
    np.testing.assert_allclose(pairs["p BH"], false_discovery_control(np.array(raw)))
    from ablation.report.markdown import _seeds_markdown

    shown = _seeds_markdown(pairs)
    a_b = pairs[pairs.b == "b"].iloc[0]
    assert "a vs b (n=3 seeds)" in shown and f"{a_b['mean difference']:.2f} ± " in shown
    one_seed = tracks[tracks.run.str.endswith("seed0")]
    assert seed_pairs(one_seed, seeds, ["a", "b"]).empty


def test_the_report_tests_over_seeds_only_where_pairs_share_two_seeds(report):
    path, _ = report
    over_seeds = pd.read_csv(path.parent / "significance_seeds.csv")
    # depth 3 has seed 0 alone: no pair shares two seeds, so no test and no section
    assert list(over_seeds.columns[:4]) == ["a", "b", "target", "seeds"] and over_seeds.empty
    assert "Significance over seeds" not in path.read_text()


# ---- both sources of variance (issue 22) ---------------------------------------------------
def seeded_tracks(seed_shifts: dict[int, float]) -> tuple[pd.DataFrame, dict]:
    """Configuration A beats B by 1 dB on each of 10 tracks within a seed, and each
    seed of A moves all its tracks by ``seed_shifts[seed]``."""
    rng = np.random.default_rng(1)
    base = rng.normal(5.0, 2.0, size=10)
    rows, seeds = [], {}
    for seed, shift in seed_shifts.items():
        for configuration, offset in (("A", 1.0 + shift), ("B", 0.0)):
            run = f"{configuration}-seed{seed}"
            seeds[run] = seed
            noise = rng.normal(0.0, 0.05, size=10)
            rows += [(configuration, run, f"t{i}", "vocals", base[i] + offset + noise[i])
                     for i in range(10)]  # fmt: skip
    return pd.DataFrame(rows, columns=["configuration", "run", "track", "target", "SDR"]), seeds


def test_a_difference_that_holds_across_seeds_is_significant_over_both():
    tracks, seeds = seeded_tracks({0: 0.0, 1: 0.1, 2: -0.1})
    both = two_way_pairs(tracks, seeds, ["A", "B"]).iloc[0]
    assert (both.seeds, both.tracks) == (3, 10)
    assert both["mean difference"] == pytest.approx(1.0, abs=0.05)
    assert both["ci low"] > 0.5 and both.p < 0.01


def test_a_difference_another_seed_undoes_is_not_significant_over_both():
    """Over tracks alone A wins every seed-averaged track; its seeds disagree by more
    than the difference, and the two-way bootstrap says so."""
    tracks, seeds = seeded_tracks({0: 2.0, 1: -2.0, 2: 0.5})
    assert wilcoxon_pairs(tracks, ["A", "B"]).iloc[0].p < 0.01  # tracks only: "significant"
    both = two_way_pairs(tracks, seeds, ["A", "B"]).iloc[0]
    assert both["ci low"] < 0 < both["ci high"] and both.p > 0.05


def test_one_seed_says_training_variance_is_unknown(report):
    path, _ = report
    text = path.read_text()
    assert "## Significance over tracks and seeds: two-way bootstrap" in text
    # the package's report has two seeds of one configuration and one of the other
    assert ONE_SEED not in text
    configurations = pd.DataFrame({"seeds": [1, 1]})
    from ablation.report.markdown import _both_markdown

    assert _both_markdown(None, configurations) == ONE_SEED
