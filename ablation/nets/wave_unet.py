"""Wave-U-Net (Stoller, Ewert and Dixon, ISMIR 2018) on the waveform.

Each of ``depth`` levels is a convolution (kernel ``down_kernel``) whose output
is kept for the skip connection, followed by downsampling by 2. A bottleneck
convolution sits at the bottom. Going up, each level upsamples by 2,
concatenates the skip features and convolves (kernel ``up_kernel``). The last
features, concatenated with the mixture, go through a 1x1 output convolution.

Lengths with ``padding="valid"`` (the paper's input-context mode; odd sizes all
the way, so every level stays centred on the same samples):

- convolution: ``n -> n - (kernel - 1)``
- decimation: ``n -> (n + 1) / 2`` (keeps samples 0, 2, ..., n - 1)
- strided convolution (kernel 3, stride 2, no padding): ``n -> (n - 1) / 2``
- linear / learned interpolation, transposed convolution (kernel 3, stride 2,
  padding 1): ``n -> 2n - 1`` (the new samples lie between the old ones)

``forward(mixture, context)`` estimates the region between ``context`` samples
at both ends of ``mixture``: the valid net reads the input context it needs from
that real audio (its output length grows in steps of ``2**depth``, so it may read
a little more on the right) and zeros only where the mixture ends. With
``context=0`` the whole mixture is the region and the context is zeros. With
``padding="same"`` every convolution keeps its length, resampling halves or
doubles it exactly; the net reads its receptive-field reach around the region
and the input is extended on the right to a multiple of ``2**depth``.
"""

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ablation.nets import time_major
from ablation.nets.blocks import (
    RowConv1d,
    SeparationNet,
    ceil_to_multiple,
    center_crop,
    check_at_least,
    check_choice,
    check_odd,
    constructor_arguments,
    conv_reads,
    crop_hull,
    follow,
    hull_reach,
    hull_span,
    identity_hull,
    init_convolutions,
    merge,
    on_cpu_fast,
    take,
    transposed_reads,
)

Growth = Literal["add", "double"]
Downsampling = Literal["decimate", "strided"]
Upsampling = Literal["linear", "learned", "transposed"]
Padding = Literal["valid", "same"]
WaveOutput = Literal["difference", "direct"]
OutputActivation = Literal["tanh", "none"]


class WaveUNet(SeparationNet):
    """Wave-U-Net: 1-D U-Net from a waveform mixture to waveform estimates.

    Args:
        sources: number of sources to estimate.
        channels: audio channels of the mixture and of every estimate.
        depth: number of down/up levels (the paper's L; M4 uses 12).
        filters: filters of the first level (the paper's F_c = 24).
        growth: filters per level: ``"add"`` gives ``filters * i`` at level i
            (the paper), ``"double"`` gives ``filters * 2**(i - 1)``.
        down_kernel: kernel of the downsampling-side convolutions (paper: 15).
        up_kernel: kernel of the upsampling-side convolutions (paper: 5).
        downsampling: ``"decimate"`` (drop every other sample, the paper) or
            ``"strided"`` (a learned stride-2 convolution of kernel 3).
        upsampling: ``"linear"`` interpolation (paper), ``"learned"``
            interpolation (the paper's per-channel convex weights) or
            ``"transposed"`` convolution.
        padding: ``"valid"`` convolutions with input context (paper) or ``"same"``.
        leaky_slope: negative slope of the LeakyReLU after each convolution.
        output: ``"difference"`` (the last source is the mixture minus the
            others, so the estimates sum to the mixture exactly) or ``"direct"``.
        output_activation: ``"tanh"`` (paper) or ``"none"`` on the estimated
            sources (not on the difference source).
    """

    dimension = "1d"
    # On the CPU: the time-major layout between layers (see ablation.nets.time_major).
    fast_layout = True

    def __init__(
        self,
        # Sources and channels
        sources: int = 4,
        channels: int = 2,
        # Main structure
        depth: int = 12,
        filters: int = 24,
        growth: Growth = "add",
        down_kernel: int = 15,
        up_kernel: int = 5,
        # Resampling
        downsampling: Downsampling = "decimate",
        upsampling: Upsampling = "linear",
        # Convolutions
        padding: Padding = "valid",
        leaky_slope: float = 0.2,
        # Output
        output: WaveOutput = "difference",
        output_activation: OutputActivation = "tanh",
    ) -> None:
        super().__init__()
        self.config = {"dimension": "1d", **constructor_arguments(locals())}
        _check_arguments(self.config)
        self.sources, self.channels, self.depth = sources, channels, depth
        self.down_kernel, self.up_kernel = down_kernel, up_kernel
        self.valid = padding == "valid"
        self.difference = output == "difference"

        widths = [_width(filters, growth, level) for level in range(1, depth + 2)]
        self.down_convs = nn.ModuleList(
            self._conv(c_in, c_out, down_kernel)
            for c_in, c_out in zip([channels, *widths[:-2]], widths[:-1], strict=True)
        )
        self.downsamplers = nn.ModuleList(
            _downsampler(downsampling, width, self.valid) for width in widths[:-1]
        )
        self.bottleneck = self._conv(widths[-2], widths[-1], down_kernel)
        # Up level i turns the features of level i + 1 back into widths[i - 1].
        self.upsamplers = nn.ModuleList(
            _upsampler(upsampling, width, self.valid) for width in widths[1:]
        )
        self.up_convs = nn.ModuleList(
            self._conv(deep + skip, skip, up_kernel)
            for deep, skip in zip(widths[1:], widths[:-1], strict=True)
        )
        self.activation = nn.LeakyReLU(leaky_slope)
        estimated = sources - 1 if self.difference else sources
        self.output_conv = RowConv1d(widths[0] + channels, estimated * channels, kernel_size=1)
        self.output_activation = nn.Tanh() if output_activation == "tanh" else nn.Identity()
        init_convolutions(self, "glorot")
        self._smallest_bottleneck = self._find_smallest_bottleneck()

    def _conv(self, c_in: int, c_out: int, kernel: int) -> nn.Conv1d:
        return RowConv1d(c_in, c_out, kernel, padding=0 if self.valid else kernel // 2)

    # ----------------------------------------------------------------- lengths
    def _valid_lengths(self, bottleneck: int) -> tuple[int, int] | None:
        """(input, output) lengths of the valid net whose bottleneck output has
        ``bottleneck`` samples, or None when some level would be empty."""
        length = bottleneck
        for upsampler in self.upsamplers:
            length = upsampler.out_length(length) - (self.up_kernel - 1)
            if length < 1:
                return None
        output = length
        length = bottleneck + self.down_kernel - 1
        for downsampler in self.downsamplers:
            length = downsampler.in_length(length) + self.down_kernel - 1
        return length, output

    def _find_smallest_bottleneck(self) -> int:
        # A level of length n >= up_kernel never shrinks going up (2n - 1 - (k - 1) >= n),
        # so the search ends by bottleneck = up_kernel.
        bottleneck = 1
        while self._valid_lengths(bottleneck) is None:
            bottleneck += 1
        return bottleneck

    def valid_lengths(self, time: int) -> tuple[int, int]:
        """Input and output lengths the valid net uses to estimate ``time`` samples.

        Every extra bottleneck sample adds ``2**depth`` samples to both, so the
        smallest sufficient bottleneck is found in closed form.

        Returns:
            ``(input_length, output_length)`` with ``output_length >= time``;
            the output is centred in the input.
        """
        smallest = self._smallest_bottleneck
        _, output = self._valid_lengths(smallest)
        extra = max(0, -(-(time - output) // 2**self.depth))
        return self._valid_lengths(smallest + extra)

    def receptive_field(self) -> int:
        """Input samples that one output sample depends on, at most (the span
        varies with the output position's phase modulo ``2**depth``).

        Exact: the dependency span of every output position is followed through
        the layers (see :mod:`ablation.nets.blocks`). For a valid net it is a
        little larger than the input context ``input_length - output_length + 1``
        because interpolated samples read two neighbours.
        """
        return hull_span(self._hull()[0])

    def reach_samples(self) -> tuple[int, int]:
        """See :meth:`SeparationNet.reach_samples` (exact, from the same hull)."""
        hull, offset = self._hull()
        return hull_reach(hull, offset)

    def _window(self, region: int, context: int) -> tuple[int, int, int]:
        """``(read_from, input_length, output_offset)``: where, relative to the
        region's start, the net's input starts, its length, and where in the
        output the region starts."""
        if self.valid:
            input_length, output_length = self.valid_lengths(region)
            left = (input_length - output_length) // 2
            return -left, input_length, 0
        before, after = (min(context, reach) for reach in self.reach_samples())
        length = ceil_to_multiple(before + region + after, 2**self.depth)
        return -before, length, before

    def context_samples(self, region: int) -> int:
        """See :meth:`SeparationNet.context_samples`."""
        start, length, _ = self._window(region, max(self.reach_samples()))
        return max(-start, start + length - region)

    def _hull(self):
        """Dependency hull of every output position, and the input position of output 0."""
        input_length, output_length = self.valid_lengths(2 ** (self.depth + 1))
        offset = (input_length - output_length) // 2
        if not self.valid:
            # Long enough that interior positions do not feel the zero padding.
            input_length, offset = ceil_to_multiple(2 * input_length, 2**self.depth), 0
        hull = identity_hull(input_length)
        skips = []
        for conv, downsample in zip(self.down_convs, self.downsamplers, strict=True):
            hull = follow(hull, *conv_reads(conv, len(hull[0])))
            skips.append(hull)
            hull = follow(hull, *downsample.reads(len(hull[0])))
        hull = follow(hull, *conv_reads(self.bottleneck, len(hull[0])))
        levels = zip(self.upsamplers, self.up_convs, skips, strict=True)
        for upsample, conv, skip in reversed(list(levels)):
            hull = follow(hull, *upsample.reads(len(hull[0])))
            hull = merge(hull, crop_hull(skip, len(hull[0])))
            hull = follow(hull, *conv_reads(conv, len(hull[0])))
        return hull, offset

    # ----------------------------------------------------------------- forward
    def forward(self, mixture: Tensor, context: int = 0) -> Tensor:
        """Separate a mixture.

        Args:
            mixture: ``(batch, channels, time)``: the region to estimate with
                ``context`` samples of real audio on each side.
            context: samples per side around the region, ``time - 2 * context >= 1``.

        Returns:
            estimates ``(batch, sources, channels, time - 2 * context)`` of the
            region; with ``output="difference"`` they sum to its mixture.
        """
        time = self._check_mixture(mixture, context)
        padded, aligned_mixture, offset = self._pad(mixture, context, time)
        features = self._unet(padded)
        if on_cpu_fast(self, features):
            features = time_major.cat_channels([features, aligned_mixture])
        else:
            features = torch.cat([features, aligned_mixture], dim=1)
        estimates = self.output_activation(self.output_conv(features))
        estimates = rearrange(estimates, "b (s c) t -> b s c t", c=self.channels)
        if self.difference:
            rest = aligned_mixture - estimates.sum(dim=1)
            estimates = torch.cat([estimates, rest.unsqueeze(1)], dim=1)
        return estimates[..., offset : offset + time].contiguous()

    def _pad(self, mixture: Tensor, context: int, region: int) -> tuple[Tensor, Tensor, int]:
        """The net's input, read around the region (zeros only outside ``mixture``),
        the mixture aligned with the net's output, and where the region starts in it."""
        start, length, offset = self._window(region, context)
        padded = take(mixture, context + start, length)
        if not self.valid:
            return padded, padded, offset
        _, output_length = self.valid_lengths(region)
        return padded, padded[..., -start : -start + output_length], 0

    def _unet(self, x: Tensor) -> Tensor:
        """``(batch, channels, input_length) -> (batch, filters, output_length)``."""
        fast = on_cpu_fast(self, x)
        skips = []
        for conv, downsample in zip(self.down_convs, self.downsamplers, strict=True):
            x = self._activate(conv(x), fast)
            skips.append(x)
            x = downsample(x)
        x = self._activate(self.bottleneck(x), fast)
        levels = zip(self.upsamplers, self.up_convs, skips, strict=True)
        for upsample, conv, skip in reversed(list(levels)):
            x = self._activate(_up_level(upsample, conv, x, skip, fast), fast)
        return x

    def _activate(self, x: Tensor, fast: bool) -> Tensor:
        # Without autograd, in place allocates no new feature map (with it,
        # in place on the convolution's view would add copies to the backward).
        if fast and not x.requires_grad:
            return F.leaky_relu_(x, self.activation.negative_slope)
        return self.activation(x)


def _width(filters: int, growth: str, level: int) -> int:
    return filters * level if growth == "add" else filters * 2 ** (level - 1)


def _check_arguments(config: dict) -> None:
    for name in ("sources", "channels", "depth", "filters"):
        check_at_least(name, config[name], 1)
    check_odd("down_kernel", config["down_kernel"])
    check_odd("up_kernel", config["up_kernel"])
    check_choice("growth", config["growth"], Growth.__args__)
    check_choice("downsampling", config["downsampling"], Downsampling.__args__)
    check_choice("upsampling", config["upsampling"], Upsampling.__args__)
    check_choice("padding", config["padding"], Padding.__args__)
    check_choice("output", config["output"], WaveOutput.__args__)
    check_choice("output_activation", config["output_activation"], OutputActivation.__args__)
    if config["output"] == "difference" and config["sources"] < 2:
        raise ValueError(
            "output='difference' needs sources >= 2 (the last source is the mixture "
            f"minus the others), got sources={config['sources']}; use output='direct'."
        )


# ------------------------------------------------------------------ resampling
def _downsampler(kind: str, width: int, valid: bool) -> nn.Module:
    return Decimate() if kind == "decimate" else StridedDownsample(width, valid)


def _upsampler(kind: str, width: int, valid: bool) -> nn.Module:
    if kind == "linear":
        return LinearUpsample(valid)
    if kind == "learned":
        return LearnedUpsample(width, valid)
    return TransposedUpsample(width, valid)


class Decimate(nn.Module):
    """Keep every other sample: ``(b, c, n) -> (b, c, ceil(n / 2))``.

    On the CPU the result and its gradient are stored time-major (see
    :mod:`ablation.nets.time_major`).
    """

    fast_layout = True

    @staticmethod
    def in_length(length: int) -> int:
        """Odd valid-mode input length that decimates to ``length``."""
        return 2 * length - 1

    @staticmethod
    def reads(length: int) -> tuple[Tensor, Tensor]:
        """First and last input position read by each output position."""
        positions = torch.arange(0, length, 2)
        return positions, positions

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, channels, n) -> (batch, channels, ceil(n / 2))``."""
        return time_major.decimate(x) if on_cpu_fast(self, x) else x[..., ::2]


class StridedDownsample(nn.Module):
    """Learned downsampling: convolution of kernel 3 and stride 2.

    Valid: ``n -> (n - 1) / 2`` (no padding); same: ``n -> n / 2`` (padding 1).
    """

    def __init__(self, width: int, valid: bool) -> None:
        super().__init__()
        self.conv = RowConv1d(width, width, 3, stride=2, padding=0 if valid else 1)

    @staticmethod
    def in_length(length: int) -> int:
        """Odd valid-mode input length that downsamples to ``length``."""
        return 2 * length + 1

    def reads(self, length: int) -> tuple[Tensor, Tensor]:
        """First and last input position read by each output position."""
        return conv_reads(self.conv, length)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, width, n) -> (batch, width, n // 2)`` (valid: ``(n - 1) / 2``)."""
        return self.conv(x)


class LinearUpsample(nn.Module):
    """Linear interpolation by 2. Valid: ``n -> 2n - 1`` through the old samples
    (``align_corners=True``, as the paper); same: ``n -> 2n``.

    On the CPU it works on the time-major layout (see
    :mod:`ablation.nets.time_major`): valid, with its own forward and
    backward; same, as bilinear interpolation of the one-row channels-last
    image, whose kernels run several times faster than the 1-D ones.
    """

    fast_layout = True

    def __init__(self, valid: bool) -> None:
        super().__init__()
        self.valid = valid

    @staticmethod
    def out_length(length: int) -> int:
        """Valid-mode output length."""
        return 2 * length - 1

    def reads(self, length: int) -> tuple[Tensor, Tensor]:
        """First and last input position read by each output position."""
        if self.valid:
            return _neighbours(2 * length - 1, length)
        # Output q samples the input at q / 2 - 1 / 4 (align_corners=False), clamped at 0.
        source = (torch.arange(2 * length) / 2 - 0.25).clamp(min=0)
        return source.floor().long(), source.ceil().long().clamp(max=length - 1)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, width, n) -> (batch, width, 2n - 1 or 2n)``."""
        length = 2 * x.shape[-1] - 1 if self.valid else 2 * x.shape[-1]
        if not on_cpu_fast(self, x):
            return F.interpolate(x, size=length, mode="linear", align_corners=self.valid)
        if self.valid:
            return time_major.interpolate_through(x)
        rows = time_major.time_major(x).unsqueeze(2)
        out = F.interpolate(rows, size=(1, length), mode="bilinear", align_corners=self.valid)
        return out.squeeze(2)


class LearnedUpsample(nn.Module):
    """The paper's learned interpolation: between neighbours ``a`` and ``b`` it
    inserts ``w * a + (1 - w) * b`` with one ``w = sigmoid(v)`` in [0, 1] per
    channel (``v = 0`` at start: linear interpolation).

    Valid: ``n -> 2n - 1``; same: ``n -> 2n`` (the last sample is repeated).
    """

    def __init__(self, width: int, valid: bool) -> None:
        super().__init__()
        self.valid = valid
        self.logit = nn.Parameter(torch.zeros(width, 1))

    @staticmethod
    def out_length(length: int) -> int:
        """Valid-mode output length."""
        return 2 * length - 1

    def reads(self, length: int) -> tuple[Tensor, Tensor]:
        """First and last input position read by each output position."""
        return _neighbours(2 * length - 1 if self.valid else 2 * length, length)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, width, n) -> (batch, width, 2n - 1 or 2n)``."""
        if not self.valid:
            x = torch.cat([x, x[..., -1:]], dim=-1)
        weight = torch.sigmoid(self.logit)
        between = weight * x[..., :-1] + (1 - weight) * x[..., 1:]
        interleaved = rearrange([x[..., :-1], between], "two b c n -> b c (n two)")
        return interleaved if not self.valid else torch.cat([interleaved, x[..., -1:]], dim=-1)


class TransposedUpsample(nn.Module):
    """Transposed convolution with stride 2. Valid: kernel 3, padding 1,
    ``n -> 2n - 1`` (same grid as linear interpolation); same: kernel 4,
    padding 1, ``n -> 2n``."""

    def __init__(self, width: int, valid: bool) -> None:
        super().__init__()
        kernel = 3 if valid else 4
        self.conv = nn.ConvTranspose1d(width, width, kernel, stride=2, padding=1)

    @staticmethod
    def out_length(length: int) -> int:
        """Valid-mode output length."""
        return 2 * length - 1

    def reads(self, length: int) -> tuple[Tensor, Tensor]:
        """First and last input position read by each output position."""
        return transposed_reads(self.conv, length)

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, width, n) -> (batch, width, 2n - 1 or 2n)``."""
        return self.conv(x)


def _up_level(upsample: nn.Module, conv: nn.Module, x: Tensor, skip: Tensor, fast: bool) -> Tensor:
    """``conv(cat([upsample(x), center_crop(skip)]))``, time-major when ``fast``;
    there, valid linear interpolation is folded into the convolution's taps."""
    if not fast:
        x = upsample(x)
        return conv(torch.cat([x, center_crop(skip, x.shape[-1])], dim=1))
    linear = isinstance(upsample, LinearUpsample) and upsample.valid
    if linear and on_cpu_fast(upsample, x) and on_cpu_fast(conv, x):
        gemm = conv.gemm_weight_gradient
        return time_major.conv_interpolated(x, skip, conv.weight, conv.bias, gemm)
    return conv(time_major.cat_cropped(upsample(x), skip))


def _neighbours(outputs: int, length: int) -> tuple[Tensor, Tensor]:
    """Output q of an interpolation by 2 reads inputs q // 2 and (q + 1) // 2."""
    q = torch.arange(outputs)
    return q // 2, ((q + 1) // 2).clamp(max=length - 1)
