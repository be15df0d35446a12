"""The Jansson / Spleeter U-Net core of the 2-D nets (:mod:`ablation.nets.spec_unet`)."""

from typing import Literal

import torch
from torch import Tensor, nn

from ablation.nets.blocks import (
    conv_reads,
    follow,
    hull_reach,
    hull_span,
    identity_hull,
    merge,
    transposed_reads,
)
from ablation.nets.fast_ops import ELU

Activation = Literal["leaky_relu", "relu", "elu"]

# Spleeter's last layer: a 4x4 convolution with dilation 2 after the last up level.
HEAD_KERNEL = 4
HEAD_DILATION = 2


class UNet2d(nn.Module):
    """The Jansson / Spleeter U-Net core.

    Encoder level: convolution (``kernel_size``, stride 2) -> batch norm ->
    LeakyReLU. Decoder level: transposed convolution (stride 2) -> ReLU ->
    batch norm -> dropout on the deepest ``dropout_levels`` levels ->
    concatenation with the encoder level of the same size. The last decoder
    level outputs ``out_channels`` maps, followed by Spleeter's 4x4
    convolution of dilation 2. Two departures from Spleeter's code: skips
    carry the encoder's activations (Spleeter takes them before batch norm;
    after it they are on the scale of the decoder's), and the last decoder
    level has ``out_channels`` filters instead of one, so that a single U-Net
    can serve several sources.

    Args:
        in_channels: input feature maps.
        out_channels: output feature maps.
        depth: number of down/up levels.
        filters: filters of the first level, doubled at every level.
        kernel_size: odd square kernel of the strided convolutions.
        leaky_slope: negative slope of the encoder's LeakyReLU.
        batch_norm: batch norm after every (transposed) convolution.
        dropout: dropout probability of the deepest decoder levels.
        dropout_levels: how many decoder levels, deepest first, use dropout.
        raw_bottleneck: the deepest encoder level is its convolution alone (Spleeter's
            ``conv6``, whose batch norm and activation its code computes but never uses).
    """

    # The head runs in channels-last layout (see ablation.nets.blocks, fast layouts):
    # oneDNN's dilated 4x4 convolution on a few full-size maps is about 5x faster
    # there, backward included. The levels stay contiguous: channels-last batch
    # norm backward, and reordering the deep levels' large weights, cost more
    # than their convolutions gain.
    fast_layout = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        depth: int,
        filters: int = 16,
        kernel_size: int = 5,
        leaky_slope: float = 0.2,
        conv_activation: Activation = "leaky_relu",
        deconv_activation: Activation = "relu",
        batch_norm: bool = True,
        dropout: float = 0.5,
        dropout_levels: int = 3,
        raw_bottleneck: bool = False,
    ) -> None:
        super().__init__()
        self.depth, self.kernel_size = depth, kernel_size
        widths = [filters * 2**level for level in range(depth)]
        ins = [in_channels, *widths[:-1]]
        self.encoder = nn.ModuleList(
            # Spleeter feeds its decoder conv6 itself: no batch norm, no activation.
            _down_level(c_in, c_out, kernel_size, nn.Identity(), False)
            if raw_bottleneck and level == depth - 1
            else _down_level(
                c_in, c_out, kernel_size, activation(conv_activation, leaky_slope), batch_norm
            )
            for level, (c_in, c_out) in enumerate(zip(ins, widths, strict=True))
        )
        # Decoder level i (deepest first) reads the level below (concatenated
        # with its skip, except at the bottom) and writes the width of the level above.
        decoder_in = [widths[-1]] + [2 * w for w in reversed(widths[1:-1])] + [2 * widths[0]]
        decoder_out = list(reversed(widths[:-1])) + [out_channels]
        if depth == 1:
            decoder_in = [widths[0]]
        self.decoder = nn.ModuleList(
            _up_level(
                c_in,
                c_out,
                kernel_size,
                activation(deconv_activation, leaky_slope),
                batch_norm,
                dropout if level < min(dropout_levels, depth - 1) else 0.0,
            )
            for level, (c_in, c_out) in enumerate(zip(decoder_in, decoder_out, strict=True))
        )
        self.head = nn.Conv2d(
            out_channels, out_channels, HEAD_KERNEL, dilation=HEAD_DILATION, padding="same"
        )

    def receptive_field(self) -> int:
        """Input positions that one output position depends on along one axis
        (frames or bins: the kernels are square), at most over positions.

        Exact: the dependency span of every output position is followed through
        the layers (see :mod:`ablation.nets.blocks`).
        """
        return hull_span(self._hull())

    def reach(self) -> tuple[int, int]:
        """``(before, after)`` positions an output position's inputs reach, at most."""
        return hull_reach(self._hull())

    def _hull(self):
        # Long enough that interior positions do not feel the zero padding.
        length = 2**self.depth * 4 * (self.kernel_size + HEAD_KERNEL * HEAD_DILATION)
        hull = identity_hull(length)
        skips = []
        for level in self.encoder:
            hull = follow(hull, *conv_reads(level[0], len(hull[0])))
            skips.append(hull)
        skips.pop()
        for index, level in enumerate(self.decoder):
            if index > 0:
                hull = merge(hull, skips.pop())
            hull = follow(hull, *transposed_reads(level[0], len(hull[0])))
        return follow(hull, *conv_reads(self.head, len(hull[0])))

    def forward(self, x: Tensor) -> Tensor:
        """``x: (batch, in_channels, freq, frames) -> (batch, out_channels, freq, frames)``,
        ``freq`` and ``frames`` multiples of ``2**depth``."""
        skips = []
        for level in self.encoder:
            x = level(x)
            skips.append(x)
        skips.pop()  # the bottom level feeds the decoder directly
        for index, level in enumerate(self.decoder):
            if index > 0:
                x = torch.cat([skips.pop(), x], dim=1)
            x = level(x)
        if not self.fast_layout:
            return self.head(x)
        return self.head(x.contiguous(memory_format=torch.channels_last)).contiguous()


def activation(name: str, slope: float) -> nn.Module:
    """``"leaky_relu"`` (with ``slope``), ``"relu"`` or ``"elu"``."""
    return {"leaky_relu": lambda: nn.LeakyReLU(slope), "relu": nn.ReLU, "elu": ELU}[name]()


def _down_level(
    c_in: int, c_out: int, kernel: int, act: nn.Module, batch_norm: bool
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=2, padding=kernel // 2),
        nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
        act,
    )


def _up_level(
    c_in: int, c_out: int, kernel: int, act: nn.Module, batch_norm: bool, dropout: float
) -> nn.Sequential:
    # padding kernel // 2 with output_padding 1 doubles the size exactly, like
    # TensorFlow's "same" transposed convolution in Spleeter.
    return nn.Sequential(
        nn.ConvTranspose2d(c_in, c_out, kernel, stride=2, padding=kernel // 2, output_padding=1),
        act,
        nn.BatchNorm2d(c_out) if batch_norm else nn.Identity(),
        nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
    )
