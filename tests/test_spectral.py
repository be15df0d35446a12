"""STFT / iSTFT layers and magnitude compression (ablation.spectral)."""

import numpy as np
import pytest
import scipy.signal
import torch

from ablation.spectral import ISTFT, STFT, _OverlapAdd, compress, decompress, num_frames

GEOMETRIES = [(512, 128), (4096, 1024), (256, 128)]


@pytest.mark.parametrize(("n_fft", "hop"), GEOMETRIES)
@pytest.mark.parametrize("length", [1, 7, 1001, 4093, 9999])
def test_istft_inverts_stft_for_odd_lengths(n_fft, hop, length):
    signal = torch.randn(2, 3, length, dtype=torch.float64)
    spectrogram = STFT(n_fft, hop)(signal)
    assert spectrogram.shape == (2, 3, n_fft // 2 + 1, num_frames(length, hop))
    assert spectrogram.is_complex()
    restored = ISTFT(n_fft, hop)(spectrogram, length=length)
    assert restored.shape == signal.shape
    torch.testing.assert_close(restored, signal, atol=1e-5, rtol=0)


def test_istft_round_trip_in_float32():
    signal = torch.randn(2, 4093)
    restored = ISTFT(4096, 1024)(STFT(4096, 1024)(signal), length=4093)
    torch.testing.assert_close(restored, signal, atol=1e-5, rtol=0)


def frames_major(spectrogram: torch.Tensor) -> torch.Tensor:
    """The same values, with memory running along the bins (how the 2-D net builds them)."""
    return spectrogram.transpose(-1, -2).contiguous().transpose(-1, -2)


@pytest.mark.filterwarnings("ignore:The length of signal is shorter")
@pytest.mark.parametrize(("n_fft", "hop"), GEOMETRIES)
@pytest.mark.parametrize(("length", "bins"), [(4093, None), (9999, 100), (700, None)])
def test_istft_of_frames_major_spectra_matches_torch_istft(monkeypatch, n_fft, hop, length, bins):
    # The fast overlap-add against torch.istft (fast_layout off), values and
    # gradients, also for fewer bins (zero above) and a length past the frames.
    torch.manual_seed(0)
    spectrogram = STFT(n_fft, hop)(torch.randn(2, 3, length, dtype=torch.float64))
    spectrogram = spectrogram[..., :bins, :]
    weights = torch.randn(2, 3, length + 500, dtype=torch.float64)

    def invert(fast: bool) -> tuple[torch.Tensor, torch.Tensor]:
        monkeypatch.setattr(ISTFT, "fast_layout", fast)
        source = frames_major(spectrogram).requires_grad_()
        signal = ISTFT(n_fft, hop)(source, length=length + 500)
        (signal * weights).sum().backward()
        return signal.detach(), source.grad

    (fast, fast_grad), (plain, plain_grad) = invert(True), invert(False)
    # The layers' Hann window is float32 (torchaudio's), which bounds the agreement.
    for ours, reference in ((fast, plain), (fast_grad, plain_grad)):
        error = (ours - reference).abs().max() / reference.abs().max()
        assert error < 1e-6, f"max |fast - plain| is {error:.1e} of the largest value"


def test_istft_round_trip_of_frames_major_spectra():
    signal = torch.randn(2, 4093)
    spectrogram = frames_major(STFT(4096, 1024)(signal))
    restored = ISTFT(4096, 1024)(spectrogram, length=4093)
    torch.testing.assert_close(restored, signal, atol=1e-5, rtol=0)


def test_overlap_add_sums_each_part_into_its_row_and_has_the_exact_gradient():
    chunks = torch.arange(2 * 3 * 2 * 2, dtype=torch.float64).reshape(2, 3, 2, 2)
    summed = _OverlapAdd.apply(chunks)
    # Rows: part 0 of frame 0; part 1 of frame 0 + part 0 of frame 1; ...; part 1 of frame 2.
    expected = torch.stack(
        [
            chunks[:, 0, 0],
            chunks[:, 0, 1] + chunks[:, 1, 0],
            chunks[:, 1, 1] + chunks[:, 2, 0],
            chunks[:, 2, 1],
        ],
        dim=1,
    )
    torch.testing.assert_close(summed, expected, atol=0, rtol=0)
    probe = torch.randn(2, 4, 3, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(_OverlapAdd.apply, (probe,))


def test_istft_refuses_more_bins_than_its_fft_has():
    with pytest.raises(ValueError, match="at most 257 bins, got 300"):
        ISTFT(512, 128)(torch.zeros(1, 300, 10, dtype=torch.complex64), length=1000)


def test_stft_frames_match_numpy_rfft_of_windowed_frames():
    n_fft, hop, length = 256, 64, 1001
    signal = np.random.default_rng(0).standard_normal(length)
    ours = STFT(n_fft, hop)(torch.from_numpy(signal)).numpy()
    # Reference: centred frames of the zero-padded signal, periodic Hann window;
    # torchaudio keeps its window in float32, hence the tolerance.
    padded = np.pad(signal, n_fft // 2)
    window = scipy.signal.get_window("hann", n_fft, fftbins=True)
    for frame in (0, 5, ours.shape[-1] - 1):
        segment = padded[frame * hop : frame * hop + n_fft]
        np.testing.assert_allclose(
            ours[:, frame], np.fft.rfft(window * segment), rtol=1e-5, atol=1e-4
        )


@pytest.mark.parametrize(("n_fft", "hop"), [(512, 300), (512, 0), (1, 1)])
def test_bad_geometry_raises_clear_error(n_fft, hop):
    with pytest.raises(ValueError, match="hop_length"):
        STFT(n_fft, hop)
    with pytest.raises(ValueError, match="hop_length"):
        ISTFT(n_fft, hop)


def test_compress_is_log1p_of_magnitude_with_phase_kept():
    x = torch.randn(100, dtype=torch.complex128) * 50
    z = compress(x)
    torch.testing.assert_close(z.abs(), np.log1p(x.abs()))
    torch.testing.assert_close(torch.angle(z), torch.angle(x))
    torch.testing.assert_close(decompress(z), x)


def test_compress_and_decompress_are_finite_at_zero_with_finite_gradients():
    x = torch.zeros(4, dtype=torch.complex64, requires_grad=True)
    out = decompress(compress(x))
    assert torch.equal(out, torch.zeros_like(out))
    torch.view_as_real(out).sum().backward()
    assert torch.isfinite(torch.view_as_real(x.grad)).all()


def test_decompress_stays_finite_for_huge_values():
    assert torch.isfinite(torch.view_as_real(decompress(torch.full((3,), 1e6 + 0j)))).all()
