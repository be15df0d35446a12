"""Pieces shared by both U-Net families: the reporting base class and argument checks."""

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from ablation.nets import time_major


class SeparationNet(nn.Module):
    """Base of every separation net: ``forward(mixture) -> estimates`` plus figures to log.

    Subclasses set ``dimension`` (``"1d"`` or ``"2d"``), ``depth``, ``sources``,
    ``channels`` and ``config`` (the constructor arguments plus ``"dimension"``:
    ``ablation.nets.build(net.config)`` rebuilds the same architecture, so a
    checkpoint that stores it describes itself), and implement
    :meth:`receptive_field`.
    """

    dimension: str
    depth: int
    sources: int
    channels: int
    config: dict[str, Any]
    # What the net was trained for (set by its LightningModule or checkpoint, None before).
    source_names: tuple[str, ...] | None = None
    sample_rate: int | None = None
    segment_seconds: float | None = None

    def set_training_audio(
        self, sources: Sequence[str], sample_rate: int, segment_seconds: float
    ) -> None:
        """Record the source names, sample rate and segment the net is trained on."""
        if len(sources) != self.sources:
            raise ValueError(
                f"the net estimates {self.sources} sources, but {len(sources)} are named "
                f"({list(sources)}): build it with sources={len(sources)}."
            )
        self.source_names = tuple(sources)
        self.sample_rate, self.segment_seconds = int(sample_rate), float(segment_seconds)

    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def receptive_field(self) -> int:
        """Receptive field of one output value, in :attr:`receptive_field_unit`."""
        raise NotImplementedError

    @property
    def receptive_field_unit(self) -> str:
        """Unit of :meth:`receptive_field`: ``"samples"`` or ``"frames"``."""
        return "samples"

    def receptive_field_samples(self) -> int:
        """Receptive field of one output sample, in input samples."""
        return self.receptive_field()

    def reach_samples(self) -> tuple[int, int]:
        """``(before, after)``: how far before and after an output sample the
        input samples it depends on reach, at most over positions. An output is
        computed from real audio alone when that much real audio surrounds it."""
        raise NotImplementedError

    def context_samples(self, region: int) -> int:
        """Samples of input the net reads on each side (the larger side) to
        estimate ``region`` samples: :meth:`reach_samples` plus whatever the
        net's length grid adds. ``forward(mixture, context)`` with at least this
        much real context around the region computes nothing on zeros."""
        raise NotImplementedError

    def macs_per_second(self, sample_rate: int = 44100) -> float:
        """Multiply-accumulates of one forward call on one second of mono or
        multichannel audio (batch 1), measured with ``FlopCounterMode``.

        Counts what the net pads itself (input context, padding to a multiple
        of ``2**depth``), so it is the cost of separating a one-second chunk;
        FFTs and elementwise operations are not counted (MACs = FLOPs / 2).
        """
        mixture = torch.zeros(1, self.channels, sample_rate, device=_device_of(self))
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad(), FlopCounterMode(display=False) as counter:
                self(mixture)
        finally:
            self.train(was_training)
        return counter.get_total_flops() / 2

    def describe(self, sample_rate: int = 44100) -> dict[str, Any]:
        """Figures for logging: dimension, depth, parameters, receptive field and cost."""
        return {
            "dimension": self.dimension,
            "depth": self.depth,
            "sources": self.sources,
            "channels": self.channels,
            "parameters": self.num_parameters(),
            "receptive_field": self.receptive_field(),
            "receptive_field_unit": self.receptive_field_unit,
            "receptive_field_samples": self.receptive_field_samples(),
            "macs_per_second": self.macs_per_second(sample_rate),
        }

    def _check_mixture(self, mixture: Tensor, context: int = 0) -> int:
        """Check the input and return the length of the region to estimate."""
        if mixture.dim() != 3 or mixture.shape[1] != self.channels:
            raise ValueError(
                f"{type(self).__name__} expects a mixture (batch, {self.channels}, time), "
                f"got shape {tuple(mixture.shape)}; build the net with "
                f"channels={mixture.shape[-2] if mixture.dim() >= 2 else '?'} or fix the input."
            )
        region = mixture.shape[-1] - 2 * context
        if context < 0 or region < 1:
            raise ValueError(
                f"context must be >= 0 samples per side and leave a region of >= 1 sample, "
                f"got context={context} for a mixture of {mixture.shape[-1]} samples."
            )
        return region


def _device_of(module: nn.Module) -> torch.device:
    parameter = next(module.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def init_convolutions(module: nn.Module, init: str) -> None:
    """Initialize every (transposed) convolution of ``module`` as the papers'
    TensorFlow code did: ``"glorot"`` (Wave-U-Net's default initializer) or
    ``"he"`` (Spleeter's ``he_uniform``) uniform weights, and zero biases.

    PyTorch's default uniform biases matter here: the Wave-U-Net's 1x1 output
    convolution has few inputs, so they start every source with a DC offset
    of up to +-0.4, ten times the loss of estimating silence.
    """
    for layer in module.modules():
        if isinstance(layer, nn.modules.conv._ConvNd):
            if init == "glorot":
                nn.init.xavier_uniform_(layer.weight)
            else:
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def constructor_arguments(local_variables: dict[str, Any]) -> dict[str, Any]:
    """A constructor's arguments from its ``locals()`` (called first thing): the ``config``
    that rebuilds the net."""
    return {k: v for k, v in local_variables.items() if k not in ("self", "__class__")}


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise a ``ValueError`` naming the valid choices when ``value`` is not one of them."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def check_at_least(name: str, value: int, minimum: int) -> None:
    """Raise a ``ValueError`` when the integer ``value`` is below ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")


def check_odd(name: str, value: int) -> None:
    """Raise a ``ValueError`` unless ``value`` is a positive odd integer.

    Odd kernels crop or pad the same amount on both sides, which keeps every
    level of a U-Net centred on the same samples.
    """
    check_at_least(name, value, 1)
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd so the net stays centred, got {value}.")


def center_crop(x: Tensor, length: int, dim: int = -1) -> Tensor:
    """Crop ``x`` along ``dim`` to ``length``, removing as much on each side."""
    excess = x.shape[dim] - length
    if excess < 0 or excess % 2:
        raise ValueError(f"cannot centre-crop size {x.shape[dim]} to {length}.")
    return x.narrow(dim, excess // 2, length)


def take(x: Tensor, start: int, length: int) -> Tensor:
    """``x[..., start : start + length]``, with zeros where that lies outside ``x``."""
    end = start + length
    inside = x[..., max(start, 0) : max(min(end, x.shape[-1]), 0)]
    return F.pad(inside, (max(-start, 0), length - inside.shape[-1] - max(-start, 0)))


def hull_reach(hull: "Hull", offset: int = 0) -> tuple[int, int]:
    """``(before, after)`` reach of a hull whose output ``q`` sits at input ``q + offset``."""
    positions = torch.arange(len(hull[0])) + offset
    return int((positions - hull[0]).max()), int((hull[1] - positions).max())


def ceil_to_multiple(value: int, multiple: int) -> int:
    """Smallest multiple of ``multiple`` that is >= ``value``."""
    return -(-value // multiple) * multiple


# ------------------------------------------------------------ receptive fields
# A receptive field is tracked as a "hull": for every position of a layer's
# output, the first and last net-input positions it depends on (two long
# tensors). Each layer says, for each of its output positions, which of its own
# input positions it reads; following that through the net gives the exact
# dependency span of every output position. Spans are read off the layers'
# own kernel, stride, padding and dilation, and the tests check them against
# the gradients of the real nets.
Hull = tuple[Tensor, Tensor]


def identity_hull(length: int) -> Hull:
    """Hull of the net input itself: every position depends on itself."""
    positions = torch.arange(length)
    return positions, positions


def follow(hull: Hull, first: Tensor, last: Tensor) -> Hull:
    """Hull after a layer whose output ``q`` reads its inputs ``first[q]..last[q]``."""
    low, high = hull
    return low[first], high[last]


def merge(a: Hull, b: Hull) -> Hull:
    """Hull of a concatenation of two feature maps of the same length."""
    return torch.minimum(a[0], b[0]), torch.maximum(a[1], b[1])


def crop_hull(hull: Hull, length: int) -> Hull:
    """Hull of a centre crop (see :func:`center_crop`)."""
    return center_crop(hull[0], length), center_crop(hull[1], length)


def hull_span(hull: Hull) -> int:
    """Largest number of input positions any output position depends on."""
    return int((hull[1] - hull[0]).max()) + 1


def conv_reads(conv: nn.Module, length: int, axis: int = 0) -> tuple[Tensor, Tensor]:
    """Input positions read by each output position of a ``Conv1d`` / ``Conv2d``
    along ``axis`` of its spatial dimensions, for an input of ``length``."""
    kernel, stride, dilation = conv.kernel_size[axis], conv.stride[axis], conv.dilation[axis]
    reach = dilation * (kernel - 1)
    # padding="same" pads reach // 2 on the left (and the rest on the right).
    left = reach // 2 if conv.padding == "same" else conv.padding[axis]
    right = reach - left if conv.padding == "same" else conv.padding[axis]
    outputs = (length + left + right - reach - 1) // stride + 1
    start = torch.arange(outputs) * stride - left
    return start.clamp(0, length - 1), (start + reach).clamp(0, length - 1)


def transposed_reads(conv: nn.Module, length: int, axis: int = 0) -> tuple[Tensor, Tensor]:
    """Input positions read by each output position of a ``ConvTranspose1d`` /
    ``ConvTranspose2d`` (no dilation) along ``axis``, for an input of ``length``."""
    kernel, stride = conv.kernel_size[axis], conv.stride[axis]
    padding, extra = conv.padding[axis], conv.output_padding[axis]
    outputs = (length - 1) * stride - 2 * padding + kernel + extra
    # Output q = stride * i + tap - padding for taps 0..kernel - 1.
    q = torch.arange(outputs) + padding
    first = torch.div(q - (kernel - 1) + stride - 1, stride, rounding_mode="floor")
    last = torch.div(q, stride, rounding_mode="floor")
    return first.clamp(0, length - 1), last.clamp(0, length - 1)


# ------------------------------------------------------------ fast layouts
# Layers with a class attribute ``fast_layout`` compute what torch's own layer
# computes, with the same parameters and state-dict keys, in a memory layout
# faster on the CPU; ``fast_layout = False`` runs the plain layer (tests
# compare the two, benchmarks time them).


def on_cpu_fast(layer: nn.Module, x: Tensor) -> bool:
    """Whether ``layer`` runs its fast layout on ``x``: switched on, and on the CPU
    (on CUDA, cuDNN's plain layouts are the fast path)."""
    return type(layer).fast_layout and x.device.type == "cpu"


class RowConv1d(nn.Conv1d):
    """``nn.Conv1d`` computed as a one-row, channels-last ``Conv2d`` on the CPU.

    oneDNN's 2-D channels-last kernels run the long, narrow convolutions of a
    Wave-U-Net faster than its 1-D ones, backward included. A one-row
    channels-last image is a ``(batch, channels, time)`` tensor stored
    time-major, so the input is taken and the output returned in that layout
    (a transposed view: call ``.contiguous()`` where the plain one is needed);
    a net whose other layers keep it converts nothing between convolutions.
    In training, the weight gradient of the shapes where that pays is
    computed by torch's GEMM (:func:`ablation.nets.time_major.row_conv`).
    """

    fast_layout = True
    # In training, the weight gradient by torch's GEMM where that pays.
    gemm_weight_gradient = True

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, in_channels, time) -> (batch, out_channels, time')``, as ``Conv1d``."""
        if not on_cpu_fast(self, x) or self.padding_mode != "zeros":
            return super().forward(x)
        plain = (self.stride, self.dilation, self.groups) == ((1,), (1,), 1)
        if plain and not isinstance(self.padding, str):
            return time_major.row_conv(
                x, self.weight, self.bias, self.padding[0], self.gemm_weight_gradient
            )
        rows = x.unsqueeze(2).contiguous(memory_format=torch.channels_last)
        padding = self.padding if isinstance(self.padding, str) else (0, *self.padding)
        out = F.conv2d(
            rows,
            self.weight.unsqueeze(2),
            self.bias,
            (1, *self.stride),
            padding,
            (1, *self.dilation),
            self.groups,
        )
        return out.squeeze(2)


def fast_layout_classes(module: nn.Module) -> set[type]:
    """The classes of ``module``'s layers that have a fast layout to switch off."""
    return {type(layer) for layer in module.modules() if hasattr(type(layer), "fast_layout")}
