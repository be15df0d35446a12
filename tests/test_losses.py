"""Losses (ablation.losses) and fast metrics (ablation.metrics) against independent references."""

import numpy as np
import pytest
import scipy.signal
import torch
import torch.nn.functional as F

from ablation.losses import MultiResolutionSTFTLoss, balanced_weights, build_loss
from ablation.metrics import sdr, si_sdr

SOURCES = ("drums", "bass", "other", "vocals")


def stems(batch=2, sources=4, channels=2, time=2048, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    scale = torch.tensor([1.0, 0.3, 2.0, 0.05])[:sources].view(1, -1, 1, 1)
    return torch.randn(batch, sources, channels, time, generator=generator) * scale


def orthogonal_noise(reference: np.ndarray, seed: int) -> np.ndarray:
    """Noise with zero inner product with ``reference`` (over its whole array)."""
    noise = np.random.default_rng(seed).standard_normal(reference.shape)
    return noise - (noise * reference).sum() / (reference**2).sum() * reference


# ---- metrics ---------------------------------------------------------------------


def test_sdr_matches_closed_form_for_known_ratios():
    ref = stems(batch=1, sources=2).numpy()[0]
    noise = np.random.default_rng(1).standard_normal(ref.shape)
    # Scale the distortion so that |ref|^2 / |noise|^2 is exactly 100 and 0.1 per source.
    ratios = np.array([100.0, 0.1])
    energy = lambda x: (x**2).sum(axis=(-2, -1))  # noqa: E731
    noise *= np.sqrt(energy(ref) / ratios / energy(noise))[:, None, None]
    got = sdr(torch.from_numpy(ref + noise)[None], torch.from_numpy(ref)[None])
    assert got.shape == (1, 2)
    np.testing.assert_allclose(got[0].numpy(), 10 * np.log10(ratios), atol=1e-4)


def test_sdr_is_not_scale_invariant_but_si_sdr_is():
    ref = stems(batch=3, sources=4)
    # Half the reference leaves a distortion of a quarter of its energy: 10 log10(4) dB.
    np.testing.assert_allclose(sdr(0.5 * ref, ref).numpy(), 10 * np.log10(4.0), atol=1e-4)
    assert (si_sdr(0.5 * ref, ref) > 60).all()


def test_si_sdr_matches_closed_form_with_orthogonal_noise():
    ref = stems(batch=1, sources=1).numpy()[0, 0]
    noise = orthogonal_noise(ref, seed=2)
    noise *= np.sqrt((ref**2).sum() / (noise**2).sum() / 10)  # |ref|^2 / |noise|^2 = 10
    est = 3.0 * ref + noise  # gain 3: target energy 9 |ref|^2, SI-SDR = 10 log10(90)
    got = si_sdr(torch.from_numpy(est), torch.from_numpy(ref))
    np.testing.assert_allclose(got.item(), 10 * np.log10(90.0), atol=1e-3)


def test_sdr_of_silence_is_finite():
    silent = torch.zeros(1, 1, 2, 100)
    assert sdr(silent, silent).item() == pytest.approx(0.0)
    assert torch.isfinite(si_sdr(silent + 1e-3, silent)).all()


def test_metrics_reject_mismatched_shapes():
    with pytest.raises(AssertionError):
        sdr(torch.zeros(1, 2, 2, 10), torch.zeros(1, 2, 2, 11))


# ---- losses ----------------------------------------------------------------------


def test_mse_total_equals_torch_mse_over_all_elements():
    ref, est = stems(seed=0), stems(seed=1)
    total, per_source = build_loss("mse", SOURCES)(est, ref)
    assert total.item() == pytest.approx(F.mse_loss(est, ref).item(), rel=1e-6)
    for i, name in enumerate(SOURCES):
        expected = F.mse_loss(est[:, i], ref[:, i]).item()
        assert per_source[name].item() == pytest.approx(expected, rel=1e-6)


def test_equal_weights_are_the_default():
    ref, est = stems(seed=0), stems(seed=1)
    default, _ = build_loss("mse", SOURCES)(est, ref)
    equal, _ = build_loss("mse", SOURCES, "equal")(est, ref)
    assert equal.item() == default.item()


def test_l1_total_equals_torch_l1():
    ref, est = stems(seed=0), stems(seed=1)
    total, _ = build_loss("l1", SOURCES)(est, ref)
    assert total.item() == pytest.approx(F.l1_loss(est, ref).item(), rel=1e-6)


def test_explicit_source_weights_weight_each_source():
    ref, est = stems(seed=0), stems(seed=1)
    weights = [1.0, 0.0, 2.0, 4.0]
    total, _ = build_loss("mse", SOURCES, weights)(est, ref)
    expected = np.mean([w * F.mse_loss(est[:, i], ref[:, i]).item() for i, w in enumerate(weights)])
    assert total.item() == pytest.approx(expected, rel=1e-6)


def test_balanced_weights_are_normalized_inverse_energies():
    ref, est = stems(seed=0), stems(seed=1)
    energy = (ref.numpy() ** 2).mean(axis=(0, 2, 3))
    expected_weights = (1 / energy) / (1 / energy).mean()
    np.testing.assert_allclose(balanced_weights(ref).numpy(), expected_weights, rtol=1e-5)
    total, per_source = build_loss("mse", SOURCES, "balanced")(est, ref)
    mse_per_source = np.array([F.mse_loss(est[:, i], ref[:, i]).item() for i in range(4)])
    assert total.item() == pytest.approx(np.mean(expected_weights * mse_per_source), rel=1e-5)
    # Per-source values are reported before weighting, comparable with plain mse.
    assert per_source["vocals"].item() == pytest.approx(mse_per_source[3], rel=1e-6)


def test_balanced_weights_give_no_gradient():
    ref = stems().requires_grad_()
    assert not balanced_weights(ref).requires_grad


def test_si_sdr_loss_is_negative_closed_form_si_sdr():
    ref = stems(batch=1, sources=1).numpy()
    noise = orthogonal_noise(ref[0, 0], seed=3)
    noise *= np.sqrt((ref**2).sum() / (noise**2).sum() / 100)  # SNR 100 before the gain
    est = torch.from_numpy(0.5 * ref + noise[None, None])
    total, per_source = build_loss("si-sdr", ["vocals"])(est, torch.from_numpy(ref))
    # Target energy 0.25 |ref|^2 over noise 0.01 |ref|^2: SI-SDR = 10 log10(25).
    assert total.item() == pytest.approx(-10 * np.log10(25.0), abs=1e-3)
    assert per_source["vocals"].item() == pytest.approx(total.item())


def numpy_magnitude(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """|STFT| of a 1-D signal: periodic Hann, centred frames, zero padding (frames, bins)."""
    padded = np.pad(x, n_fft // 2)
    window = scipy.signal.get_window("hann", n_fft)
    frames = [padded[i * hop : i * hop + n_fft] for i in range(len(x) // hop + 1)]
    spectrum = np.fft.rfft(np.array(frames) * window, axis=-1)
    return np.sqrt(np.maximum(np.abs(spectrum) ** 2, 1e-7))


def test_mrstft_matches_independent_numpy_computation():
    ref, est = stems(time=1500, seed=0), stems(time=1500, seed=1)
    resolutions = [(256, 64), (128, 32)]
    loss = MultiResolutionSTFTLoss([n for n, _ in resolutions], [h for _, h in resolutions])
    got = loss(est, ref)
    expected = np.zeros(4)
    for n_fft, hop in resolutions:
        for s in range(4):
            mags = [
                np.stack(
                    [numpy_magnitude(x[b, s, c], n_fft, hop) for b in range(2) for c in range(2)]
                )
                for x in (ref.double().numpy(), est.double().numpy())
            ]
            m_ref, m_est = mags
            convergence = np.linalg.norm(m_ref - m_est) / np.linalg.norm(m_ref)
            log_l1 = np.abs(np.log(m_ref) - np.log(m_est)).mean()
            expected[s] += (convergence + log_l1) / len(resolutions)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)


def test_mrstft_of_a_perfect_estimate_is_zero():
    ref = stems(time=4096)
    total, _ = build_loss("mrstft", SOURCES)(ref.clone(), ref)
    assert total.item() == pytest.approx(0.0, abs=1e-6)


def test_combined_loss_is_the_weighted_sum_of_terms():
    ref, est = stems(seed=0), stems(seed=1)
    total, per_source = build_loss({"mse": 1.0, "l1": 0.5}, SOURCES)(est, ref)
    expected = F.mse_loss(est, ref).item() + 0.5 * F.l1_loss(est, ref).item()
    assert total.item() == pytest.approx(expected, rel=1e-6)
    assert set(per_source) == set(SOURCES)


@pytest.mark.parametrize("spec", ["mse", "l1", "si-sdr", "mrstft", {"mse": 1.0, "mrstft": 0.1}])
def test_every_loss_gives_finite_gradients_in_bf16(spec):
    ref = stems(time=4096)
    est = (ref + 0.1 * torch.randn_like(ref)).bfloat16().requires_grad_()
    total, _ = build_loss(spec, SOURCES, "balanced")(est, ref)
    assert total.dtype == torch.float32
    total.backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("spec", "weights", "message"),
    [
        ("mae", None, "expected one of"),
        ({"mse": -1.0}, None, ">= 0"),
        ("mse", [1.0, 2.0], "expected 4 non-negative source weights"),
        ("mse", "loud", "expected 'balanced'"),
    ],
)
def test_bad_loss_arguments_say_what_was_expected(spec, weights, message):
    with pytest.raises(ValueError, match=message):
        build_loss(spec, SOURCES, weights)


def test_loss_rejects_wrong_number_of_sources():
    with pytest.raises(ValueError, match="expected 4 sources"):
        build_loss("mse", SOURCES)(torch.zeros(1, 2, 2, 10), torch.zeros(1, 2, 2, 10))
