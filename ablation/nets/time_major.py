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
"""

from collections.abc import Sequence

import torch
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
    def forward(ctx, a: Tensor, b: Tensor, start: int) -> Tensor:
        out = _empty(a.shape[0], a.shape[1] + b.shape[1], a.shape[-1], a)
        out[:, : a.shape[1]] = a
        out[:, a.shape[1] :] = b[..., start : start + a.shape[-1]]
        ctx.split, ctx.start, ctx.b_length = a.shape[1], start, b.shape[-1]
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None]:
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
        return grad_a, grad_b, None


def cat_cropped(a: Tensor, b: Tensor) -> Tensor:
    """``torch.cat([a, center_crop(b, a.shape[-1])], dim=1)`` stored time-major:
    ``a: (batch, ca, n)``, ``b: (batch, cb, m)`` with ``m - n`` even and >= 0."""
    excess = b.shape[-1] - a.shape[-1]
    if excess < 0 or excess % 2:
        raise ValueError(f"cannot centre-crop size {b.shape[-1]} to {a.shape[-1]}.")
    return _CatCropped.apply(a, b, excess // 2)


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
