"""STFT / iSTFT layers and magnitude compression (ablation.spectral)."""

import numpy as np
import pytest
import scipy.signal
import torch

from ablation.spectral import ISTFT, STFT, compress, decompress, num_frames

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
