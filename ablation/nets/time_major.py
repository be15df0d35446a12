"""Operations of the 1-D nets' fast CPU path on the time-major layout.

A ``(batch, channels, time)`` tensor stored time-major (the strides of
``x.transpose(1, 2).contiguous().transpose(1, 2)``) is the one-row,
channels-last image that :class:`~ablation.nets.blocks.RowConv1d` convolves
fastest. The functions here compute what their plain counterparts compute
(same values, up to the order of float sums) and return that layout, with
gradients in that layout too, so a net that uses them between its
convolutions converts nothing, forward or backward. Autograd's own backward
of a slice or of ``torch.cat`` writes the plain layout, which costs a
conversion at the next convolution; hence the custom functions below.

The convolutions themselves: :func:`row_conv` (oneDNN's forward and input
gradient, torch's GEMM for the weight gradient where that is faster) and
:func:`conv_interpolated`, the Wave-U-Net's up level (interpolate,
concatenate the skip, convolve) as two convolutions with fewer
multiplications and nothing stored in between.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def time_major(x: Tensor) -> Tensor:
    """``x: (batch, channels, time)`` stored time-major, copied only if it is not."""
    return x.transpose(1, 2).contiguous().transpose(1, 2)


def _empty(batch: int, channels: int, time: int, like: Tensor) -> Tensor:
    """An uninitialised time-major ``(batch, channels, time)`` tensor."""
    return like.new_empty(batch, time, channels).transpose(1, 2)


class _CatCropped(torch.autograd.Function):
    """``torch.cat([a, center_crop(b, a.shape[-1])], dim=1)``, time-major."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        length = a.shape[-1]
        out = _empty(a.shape[0], a.shape[1] + b.shape[1], length, a)
        out[:, : a.shape[1]] = a
        start = _crop_start(b.shape[-1], length)
        out[:, a.shape[1] :] = b[..., start : start + length]
        ctx.split, ctx.start, ctx.b_length = a.shape[1], start, b.shape[-1]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = grad[:, : ctx.split]
        if ctx.needs_input_grad[1]:
            batch, channels, length = grad.shape
            grad_b = _empty(batch, channels - ctx.split, ctx.b_length, grad)
            # Only the crop's margins are zero; the middle is overwritten.
            grad_b[..., : ctx.start].zero_()
            grad_b[..., ctx.start + length :].zero_()
            grad_b[..., ctx.start : ctx.start + length] = grad[:, ctx.split :]
        return grad_a, grad_b


def _crop_start(length: int, cropped: int) -> int:
    """Where a centre crop of ``length`` samples to ``cropped`` starts."""
    excess = length - cropped
    if excess < 0 or excess % 2:
        raise ValueError(f"cannot centre-crop size {length} to {cropped}.")
    return excess // 2


def cat_cropped(a: Tensor, b: Tensor) -> Tensor:
    """``torch.cat([a, center_crop(b, a.shape[-1])], dim=1)`` stored time-major,
    for ``a: (batch, ca, n)``, ``b: (batch, cb, m)`` with ``m - n`` even and >= 0."""
    return _CatCropped.apply(a, b)


def cat_channels(tensors: Sequence[Tensor]) -> Tensor:
    """``torch.cat(tensors, dim=1)`` of ``(batch, channels, time)`` tensors, stored time-major."""
    return torch.cat([x.transpose(1, 2) for x in tensors], dim=2).transpose(1, 2)


class _Decimate(torch.autograd.Function):
    """``x[..., ::2]`` copied time-major; its gradient is time-major too."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.length = x.shape[-1]
        return time_major(x[..., ::2])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        out = _empty(grad.shape[0], grad.shape[1], ctx.length, grad)
        out[..., 1::2].zero_()
        out[..., ::2] = grad
        return out


def decimate(x: Tensor) -> Tensor:
    """``x[..., ::2]`` (``(batch, channels, n) -> (batch, channels, ceil(n / 2))``), time-major."""
    return _Decimate.apply(x)


class _Interpolate(torch.autograd.Function):
    """Linear interpolation through the samples: ``n -> 2n - 1``, the new samples
    halfway between the old (``F.interpolate(..., align_corners=True)``)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = _empty(x.shape[0], x.shape[1], 2 * x.shape[-1] - 1, x)
        out[..., ::2] = x
        between = out[..., 1::2]
        torch.add(x[..., :-1], x[..., 1:], out=between)
        between.mul_(0.5)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        batch, channels, length = grad.shape
        out = _empty(batch, channels, (length + 1) // 2, grad)
        out.copy_(grad[..., ::2])
        half = grad[..., 1::2] * 0.5
        out[..., :-1] += half
        out[..., 1:] += half
        return out


def interpolate_through(x: Tensor) -> Tensor:
    """``F.interpolate(x, size=2n - 1, mode="linear", align_corners=True)`` for
    ``x: (batch, channels, n)``, time-major."""
    return _Interpolate.apply(x)


class _RowConv(torch.autograd.Function):
    """:func:`row_conv` whose weight gradient is computed by torch's GEMM
    (:func:`_weight_gradient`)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, padding: int) -> Tensor:
        rows = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        ctx.save_for_backward(rows, weight)
        ctx.has_bias, ctx.padding = bias is not None, padding
        return F.conv2d(rows, weight.unsqueeze(2), bias, padding=(0, padding)).squeeze(2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None, None]:
        rows, weight = ctx.saved_tensors
        grad_rows = grad.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_rows, rows, weight.unsqueeze(2), None, (1, 1), (0, ctx.padding), (1, 1),
                False, (0, 0), 1, (True, False, False),
            )[0].squeeze(2)  # fmt: skip
        frames, grad_frames = rows.squeeze(2).transpose(1, 2), grad_rows.squeeze(2).transpose(1, 2)
        if ctx.needs_input_grad[1] and ctx.padding:
            frames = F.pad(frames, (0, 0, ctx.padding, ctx.padding))
        if ctx.needs_input_grad[1]:
            grad_weight = _weight_gradient(frames, grad_frames, weight.shape[-1])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad_frames.sum((0, 1))
        return grad_x, grad_weight, grad_bias, None


def _weight_gradient(frames: Tensor, grad_frames: Tensor, kernel: int) -> Tensor:
    """Weight gradient of a valid, stride-1 ``conv1d`` with ``kernel`` taps from
    its time-major (zero-padded) input ``frames: (batch, time, in)`` and output gradient
    ``grad_frames: (batch, time - kernel + 1, out)``: ``(out, in, kernel)``.

    It is the product of the output gradient and the input's columns (row
    ``n`` holds input frames ``n .. n + kernel - 1``), summed over batch and
    time. Those columns are never copied: the rows ``n = kernel * m + phase``
    of one phase are consecutive, non-overlapping slices of the time-major
    input, an ordinary strided matrix. So one GEMM per phase and batch item,
    plus one for the last ``< kernel`` rows, does it all.
    """
    batch, time, channels = frames.shape
    outputs, out_channels = grad_frames.shape[1], grad_frames.shape[2]
    width, groups = kernel * channels, outputs // kernel
    total = frames.new_zeros(out_channels, width)
    for item in range(batch):
        x, g = frames[item], grad_frames[item]
        for phase in range(kernel):
            columns = x.as_strided(
                (groups, width), (width, 1), x.storage_offset() + phase * channels
            )
            total.addmm_(g[phase : kernel * groups : kernel].t(), columns)
        tail = outputs - kernel * groups
        if tail:
            start = x.storage_offset() + kernel * groups * channels
            columns = x.as_strided((tail, width), (channels, 1), start).contiguous()
            total.addmm_(g[kernel * groups :].t(), columns)
    return total.view(out_channels, kernel, channels).transpose(1, 2).contiguous()


def row_conv(
    x: Tensor, weight: Tensor, bias: Tensor | None, padding: int = 0, gemm: bool = True
) -> Tensor:
    """``F.conv1d(x, weight, bias, padding=padding)`` (stride 1) for a time-major
    ``x: (batch, in, time)``, as oneDNN's one-row channels-last ``conv2d``,
    time-major; with ``gemm``, its weight gradient by torch's GEMM where that pays."""
    if weight.shape[-1] == 1 and padding == 0:
        # A 1x1 convolution is a matrix product (torch takes a slow path for it).
        return F.linear(x.transpose(1, 2), weight.squeeze(-1), bias).transpose(1, 2)
    if gemm and _gemm_pays(x, weight):
        return _RowConv.apply(x, weight, bias, padding)
    rows = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    return F.conv2d(rows, weight.unsqueeze(2), bias, padding=(0, padding)).squeeze(2)


# oneDNN computes the weight gradient of these shapes more slowly than
# torch's GEMM does: kernel 15 at 1.2-2.7x (24 to 144 channels), kernel 4-5
# with 96 x 48 or more input x output channels at 1.0-1.3x. With fewer (72 x 24,
# 48 x 48) oneDNN is 10-20 % faster. (AMD EPYC with AVX-512, one thread, the
# Wave-U-Net's feature maps at 44.1 kHz.)
def _gemm_pays(x: Tensor, weight: Tensor) -> bool:
    large = weight.shape[-1] >= 9 or weight.shape[0] * weight.shape[1] >= 96 * 48
    # Under autocast the convolution runs in another dtype than its saved input.
    autocast = torch.is_autocast_enabled(x.device.type) or x.dtype != weight.dtype
    return large and torch.is_grad_enabled() and not autocast


def conv_interpolated(
    x: Tensor, skip: Tensor, weight: Tensor, bias: Tensor | None, gemm: bool = True
) -> Tensor:
    """``conv1d(cat([interpolate_through(x), center_crop(skip)]), weight, bias)``
    (valid, stride 1, odd kernel) without the interpolation or the concatenation.

    ``x: (batch, cx, n)`` and ``skip: (batch, cs, m)`` time-major, ``weight:
    (out, cx + cs, kernel)``; returns ``(batch, out, 2n - kernel)`` time-major.
    Output ``2s + phase`` reads interpolated samples, each the mean of one or
    two neighbours of ``x``, so it is a convolution of ``x`` itself whose
    ``kernel // 2 + 2`` taps (:func:`_polyphase_weight`) combine the weight's:
    both phases are one convolution of ``x`` with twice the outputs, its
    time-major output rows the interleaved phases (a free reshape), with
    ``kernel + 3`` taps per output pair instead of ``2 * kernel`` (20 % fewer
    multiplications at kernel 5). The skip's part is
    convolved uncropped and its output cropped, which reads the same samples.
    """
    batch, kernel = x.shape[0], weight.shape[-1]
    length = 2 * x.shape[-1] - kernel
    deep = row_conv(x, _polyphase_weight(weight[:, : x.shape[1]]), None, 1, gemm)
    # Padding 1 adds a pair of outputs before phase pair 0 and one after the last.
    deep = deep.transpose(1, 2)[:, 1:].reshape(batch, -1, weight.shape[0])[:, :length]
    skipped = row_conv(skip, weight[:, x.shape[1] :], bias, 0, gemm).transpose(1, 2)
    start = _crop_start(skipped.shape[1], length)
    return (deep + skipped[:, start : start + length]).transpose(1, 2)


def _polyphase_weight(weight: Tensor) -> Tensor:
    """``(out, in, kernel) -> (2 * out, in, kernel // 2 + 2)``: the even outputs'
    taps on ``x``, then the odd ones', of a convolution of its interpolation."""
    kernel = weight.shape[-1]
    taps = kernel // 2 + 2
    # Interpolated sample q is x[q // 2] (q even) or the mean of x[q // 2] and x[q // 2 + 1].
    spread = weight.new_zeros(2, kernel, taps)
    for phase in range(2):
        for tap in range(kernel):
            q = phase + tap
            if q % 2:
                spread[phase, tap, q // 2 : q // 2 + 2] = 0.5
            else:
                spread[phase, tap, q // 2] = 1.0
    return torch.einsum("oik,pkt->poit", weight, spread).flatten(0, 1)
