"""A plain PyTorch port of Spleeter's 4-stem separator, the 2-D net's peer in ``bench train``.

Written for the benchmark from Spleeter's TensorFlow code
(``spleeter/model/functions/unet.py``, ``spleeter/model/__init__.py``), the
way a researcher would port it: one U-Net per source on the magnitude
spectrogram, default (contiguous) layout, ``torch.stft`` / ``torch.istft``.
Per U-Net: six 5x5 stride-2 convolutions (16 to 512 filters) with batch norm
and ELU; six 5x5 stride-2 transposed convolutions with ELU, batch norm and
dropout 0.5 on the first three, concatenated with the encoder's convolutions;
the 4x4 dilated convolution with a sigmoid; the mask times the input. The
magnitudes become ratio masks (exponent 2), zero above the kept bins, times
the mixture's STFT, then the inverse STFT. Never used for training in the suite.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

EPSILON = 1e-10


class SpleeterUNet(nn.Module):
    """Spleeter's ``apply_unet`` for one source: ``(b, 2, frames, bins) -> same``."""

    def __init__(self, channels: int = 2, depth: int = 6, filters: int = 16) -> None:
        super().__init__()
        widths = [filters * 2**level for level in range(depth)]
        self.convs = nn.ModuleList(
            nn.Conv2d(c_in, c_out, 5, stride=2, padding=2)
            for c_in, c_out in zip([channels, *widths[:-1]], widths, strict=True)
        )
        self.conv_norms = nn.ModuleList(nn.BatchNorm2d(width) for width in widths)
        ups_in = [widths[-1]] + [2 * width for width in reversed(widths[1:-1])] + [2 * widths[0]]
        ups_out = [*reversed(widths[:-1]), 1]
        self.deconvs = nn.ModuleList(
            nn.ConvTranspose2d(c_in, c_out, 5, stride=2, padding=2, output_padding=1)
            for c_in, c_out in zip(ups_in, ups_out, strict=True)
        )
        self.deconv_norms = nn.ModuleList(nn.BatchNorm2d(width) for width in ups_out)
        self.dropout = nn.Dropout(0.5)
        self.head = nn.Conv2d(1, channels, 4, dilation=2, padding="same")

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, channels, frames, bins)`` magnitudes -> masked magnitudes, same shape."""
        convs, h = [], x
        for conv, norm in zip(self.convs, self.conv_norms, strict=True):
            convs.append(conv(h))
            h = F.elu(norm(convs[-1]))
        h = convs.pop()
        for level, (deconv, norm) in enumerate(zip(self.deconvs, self.deconv_norms, strict=True)):
            h = norm(F.elu(deconv(h)))
            if level < 3:
                h = self.dropout(h)
            if convs:
                h = torch.cat([convs.pop(), h], dim=1)
        return torch.sigmoid(self.head(h)) * x


class SpleeterPort(nn.Module):
    """Spleeter's 4stems separator end to end: ``(b, 2, time) -> (b, 4, 2, time)``."""

    def __init__(
        self, sources: int = 4, depth: int = 6, n_fft: int = 4096, hop: int = 1024, bins: int = 1024
    ) -> None:
        super().__init__()
        self.n_fft, self.hop, self.bins = n_fft, hop, bins
        self.unets = nn.ModuleList(SpleeterUNet(depth=depth) for _ in range(sources))
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)

    def forward(self, mixture: Tensor) -> Tensor:
        """``mixture: (batch, channels, time)`` -> ``(batch, sources, channels, time)``."""
        batch, channels, time = mixture.shape
        stft = torch.stft(
            mixture.reshape(-1, time),
            self.n_fft,
            self.hop,
            window=self.window,
            center=True,
            pad_mode="constant",
            return_complex=True,
        ).reshape(batch, channels, self.n_fft // 2 + 1, -1)
        magnitude = stft[:, :, : self.bins].abs().transpose(2, 3)  # (b, c, frames, bins)
        estimates = torch.stack([unet(magnitude) for unet in self.unets], dim=1)
        power = estimates.square()
        masks = (power + EPSILON / len(self.unets)) / (power.sum(1, keepdim=True) + EPSILON)
        masks = F.pad(masks.transpose(3, 4), (0, 0, 0, self.n_fft // 2 + 1 - self.bins))
        sources = (masks * stft.unsqueeze(1)).reshape(-1, self.n_fft // 2 + 1, stft.shape[-1])
        signals = torch.istft(
            sources, self.n_fft, self.hop, window=self.window, center=True, length=time
        )
        return signals.reshape(batch, -1, channels, time)
