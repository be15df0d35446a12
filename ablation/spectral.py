"""STFT / iSTFT layers and the magnitude compression used by the 2-D nets.

Both layers wrap ``torchaudio.transforms`` with a Hann window, ``center=True``
and zero (``"constant"``) edge padding. Zero padding instead of torchaudio's
default reflection lets them accept signals of any length, even shorter than
half a window, and ``ISTFT(STFT(x), length=x.shape[-1])`` still returns ``x``.
"""

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchaudio.transforms import InverseSpectrogram, Spectrogram


def num_frames(length: int, hop_length: int) -> int:
    """Number of STFT frames of a ``length``-sample signal with ``center=True``."""
    return length // hop_length + 1


class STFT(nn.Module):
    """Complex short-time Fourier transform.

    Args:
        n_fft: FFT size and Hann window length, in samples.
        hop_length: hop between frames, in samples.
    """

    def __init__(self, n_fft: int = 4096, hop_length: int = 1024) -> None:
        super().__init__()
        _check_geometry(n_fft, hop_length)
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.transform = Spectrogram(
            n_fft=n_fft, hop_length=hop_length, power=None, center=True, pad_mode="constant"
        )

    @property
    def bins(self) -> int:
        """Number of frequency bins of the one-sided spectrum, ``n_fft // 2 + 1``."""
        return self.n_fft // 2 + 1

    def forward(self, signal: Tensor) -> Tensor:
        """Transform a real signal.

        Args:
            signal: ``(..., time)`` real.

        Returns:
            ``(..., bins, frames)`` complex, ``bins = n_fft // 2 + 1`` and
            ``frames = time // hop_length + 1``.
        """
        return self.transform(signal)


class ISTFT(nn.Module):
    """Inverse of :class:`STFT` (overlap-add with the same Hann window).

    Args:
        n_fft: FFT size and Hann window length, in samples.
        hop_length: hop between frames, in samples.
    """

    # Spectrograms whose memory runs along the bins are inverted without
    # torch.istft's transposing copies (see _overlap_add); False: torch.istft always.
    fast_layout = True

    def __init__(self, n_fft: int = 4096, hop_length: int = 1024) -> None:
        super().__init__()
        _check_geometry(n_fft, hop_length)
        self.n_fft = n_fft
        self.hop_length = hop_length
        self.transform = InverseSpectrogram(
            n_fft=n_fft, hop_length=hop_length, center=True, pad_mode="constant"
        )

    def forward(self, spectrogram: Tensor, length: int) -> Tensor:
        """Transform a complex spectrogram back to a signal.

        Args:
            spectrogram: ``(..., bins, frames)`` complex, ``bins <= n_fft // 2 + 1``;
                the bins above are zero.
            length: number of samples of the signal to return (the STFT cannot
                tell it: several lengths give the same number of frames).

        Returns:
            ``(..., length)`` real.
        """
        full = self.n_fft // 2 + 1
        if spectrogram.shape[-2] > full:
            raise ValueError(
                f"ISTFT(n_fft={self.n_fft}) takes at most {full} bins, got "
                f"{spectrogram.shape[-2]}; check the STFT geometry."
            )
        if self.fast_layout and not self.n_fft % self.hop_length and _frames_major(spectrogram):
            return self._overlap_add(spectrogram.transpose(-1, -2), length)
        spectrogram = F.pad(spectrogram, (0, 0, 0, full - spectrogram.shape[-2]))
        return self.transform(spectrogram, length=length)

    def _overlap_add(self, frames: Tensor, length: int) -> Tensor:
        """The inverse of ``(..., frames, bins)`` spectra whose memory runs along
        the bins: inverse FFTs along that axis (which zero-pad the missing bins),
        windowed, overlap-added (``torch.istft``'s steps without its transposing
        copies)."""
        window = self.transform.window.to(frames.device)
        count, overlap = frames.shape[-2], self.n_fft // self.hop_length
        chunks = torch.fft.irfft(frames, n=self.n_fft).mul_(window)
        summed = _OverlapAdd.apply(chunks.reshape(-1, count, overlap, self.hop_length))
        squares = window.square().reshape(1, 1, overlap, self.hop_length)
        envelope = _OverlapAdd.apply(squares.expand(1, count, -1, -1))
        # Divide only inside the centred signal: the envelope is 0 at the first sample.
        kept = slice(self.n_fft // 2, self.n_fft // 2 + length)
        signal = summed.flatten(1)[:, kept] / envelope.flatten()[kept]
        if signal.shape[-1] < length:
            signal = F.pad(signal, (0, length - signal.shape[-1]))
        return signal.reshape(*frames.shape[:-2], length)


class _OverlapAdd(torch.autograd.Function):
    """``(batch, frames, overlap, hop)`` -> ``(batch, frames + overlap - 1, hop)``:
    part ``k`` of frame ``f`` is added to row ``f + k``. Its gradient is a strided
    view of the incoming one, where autograd's slice additions would copy it
    once per part."""

    @staticmethod
    def forward(ctx, chunks: Tensor) -> Tensor:
        batch, count, overlap, hop = chunks.shape
        summed = chunks.new_zeros(batch, count + overlap - 1, hop)
        for part in range(overlap):
            summed[:, part : part + count] += chunks[:, :, part]
        ctx.count, ctx.overlap = count, overlap
        return summed

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.contiguous()
        batch, _, hop = grad.shape
        strides = (grad.stride(0), hop, hop, 1)
        return grad.as_strided((batch, ctx.count, ctx.overlap, hop), strides)


def _frames_major(spectrogram: Tensor) -> bool:
    """Whether ``(..., bins, frames)``'s memory runs along the bins."""
    return spectrogram.dim() >= 2 and spectrogram.stride(-2) == 1


def _check_geometry(n_fft: int, hop_length: int) -> None:
    # A hop above n_fft / 2 leaves gaps where the squared Hann windows sum to
    # almost zero, so the inverse would divide by ~0.
    if n_fft < 2 or not 0 < hop_length <= n_fft // 2:
        raise ValueError(
            f"STFT needs n_fft >= 2 and 0 < hop_length <= n_fft // 2 (Hann overlap-add), "
            f"got n_fft={n_fft}, hop_length={hop_length}; lower hop_length or raise n_fft."
        )


# exp() overflows float32 above ~88; STFT magnitudes of audio in [-1, 1] stay far below
# expm1(MAX_LOG_MAGNITUDE) ~ 3e6, so clamping there only guards against inf.
MAX_LOG_MAGNITUDE = 15.0


def compress(spectrogram: Tensor) -> Tensor:
    """Compress magnitudes with ``log1p`` and keep the phase.

    Args:
        spectrogram: complex tensor of any shape.

    Returns:
        complex tensor of the same shape, ``X * log1p(|X|) / |X|``; it behaves
        like ``X`` near zero, so the gradient there is one, not NaN.
    """
    return spectrogram * _ratio(spectrogram.abs(), torch.log1p, -0.5)


def decompress(spectrogram: Tensor) -> Tensor:
    """Inverse of :func:`compress`: ``Z * expm1(|Z|) / |Z|``, with ``|Z|`` clamped
    at ``MAX_LOG_MAGNITUDE`` so that it stays finite.

    Args:
        spectrogram: complex tensor of any shape.

    Returns:
        complex tensor of the same shape.
    """
    magnitude = spectrogram.abs()
    ratio = _ratio(magnitude.clamp(max=MAX_LOG_MAGNITUDE), torch.expm1, 0.5)
    # Past the clamp the magnitude is pinned: rescale Z to |Z| = MAX_LOG_MAGNITUDE first.
    pinned = MAX_LOG_MAGNITUDE / magnitude.clamp(min=MAX_LOG_MAGNITUDE)
    return spectrogram * pinned * ratio


def _ratio(magnitude: Tensor, function: Callable[[Tensor], Tensor], slope: float) -> Tensor:
    """``function(r) / r`` for ``function(0) = 0``, ``function'(0) = 1``, using its
    Taylor expansion ``1 + slope * r`` near zero to avoid ``0 / 0``."""
    small = magnitude < 1e-4
    safe = torch.where(small, 1.0, magnitude)  # the unused branch must not be NaN either
    return torch.where(small, 1 + slope * magnitude, function(safe) / safe)
