"""2-D spectrogram U-Nets: Jansson et al. 2017 / Spleeter and Spectrogram-Channels.

The STFT is a layer of the net, so the net maps waveforms to waveforms like
:class:`~ablation.nets.wave_unet.WaveUNet`. Inside:

1. ``X = STFT(mixture)``: ``(batch, channels, n_fft // 2 + 1, frames)`` complex,
   of which the lowest ``bins`` are kept (Spleeter keeps 1024 of 2049).
2. Features: ``log1p(|X|)`` per channel (``input_mode="magnitude"``) or the real
   and imaginary parts of ``X * log1p(|X|) / |X|`` as two channels per audio
   channel (``"complex"``), then the input normalization (a layer with its own
   parameters and running statistics, saved in the ``state_dict``).
3. Zero padding of the bin axis to a multiple of ``2**depth``; the U-Net(s);
   crop back. The frame axis is never padded: the net reads a window of real
   audio around the region whose frame count is a multiple of ``2**depth``
   (``forward(mixture, context)``; zeros only where the mixture ends).
4. Heads turning the U-Net output into one complex spectrogram per source:

   =============  ===========  ================================================
   input_mode     output       source spectrogram ``S``
   =============  ===========  ================================================
   magnitude      mask         ``sigmoid(y) * X``; with ``ratio_mask`` (Spleeter)
                               ``e_i = sigmoid(y_i) |X|`` become the ratio mask
                               ``(e_i^2 + eps/n) / (sum_j e_j^2 + eps)`` on ``X``,
                               so the sources add up to the mixture
   magnitude      spectrogram  ``expm1(softplus(log1p|X| + y)) * sgn(X)``
                               (compressed magnitude, mixture phase)
   complex        mask         ``(tanh(y_re) + i tanh(y_im)) * X`` (bounded
                               complex ratio mask)
   complex        spectrogram  ``decompress(compress(X) + y_re + i y_im)``
                               (compressed complex spectrogram)
   =============  ===========  ================================================

   A spectrogram output is the source's own (log1p-compressed) spectrogram,
   unbounded and able to hold energy the mixture lacks, unlike a mask. It is
   written as a residual on the mixture's compressed spectrogram so that the
   U-Net output lives on the scale of its input features: magnitudes span
   orders of magnitude across bins, and a net that had to produce them from
   scratch starts far off and needs thousands of steps to reach them.

5. Bins above ``bins`` are zero; ``ISTFT`` back to ``time`` samples.

Numerics: log compression and the input normalization bound the first layer's
input; batch norm after every layer bounds the rest at any depth; the
exponentials are clamped; an all-zero mixture gives finite output.
"""

import inspect
from typing import Any, Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from ablation.nets.blocks import (
    SeparationNet,
    ceil_to_multiple,
    check_at_least,
    check_choice,
    check_odd,
    constructor_arguments,
    init_convolutions,
    take,
)
from ablation.nets.input_norm import InputNorm, bin_norm
from ablation.nets.unet2d import Activation, UNet2d
from ablation.spectral import ISTFT, MAX_LOG_MAGNITUDE, STFT, compress, decompress, num_frames

# The U-Net core's own arguments and their defaults: SpecUNet passes them through.
UNET_ARGUMENTS = {
    name: parameter.default
    for name, parameter in inspect.signature(UNet2d).parameters.items()
    if name not in ("in_channels", "out_channels", "depth")
}

InputMode = Literal["magnitude", "complex"]
SpecOutput = Literal["mask", "spectrogram"]
# What a magnitude input feeds the U-Net: log1p(|X|) (this suite) or |X| (Spleeter).
InputScale = Literal["log1p", "linear"]

# Spleeter's EPSILON in its ratio masks.
RATIO_EPS = 1e-10


class SpecUNet(SeparationNet):
    """2-D U-Net on the spectrogram, from a waveform mixture to waveform estimates.

    Args:
        sources: number of sources to estimate.
        channels: audio channels of the mixture and of every estimate.
        depth: number of down/up levels (Spleeter: 6).
        filters: filters of the first level, doubled at every level (Spleeter: 16,
            so 16 to 512 at depth 6).
        kernel_size: square kernel of every strided (transposed) convolution.
        leaky_slope: negative slope of a ``"leaky_relu"`` activation.
        conv_activation: activation of the encoder levels (Spleeter's 2stems:
            LeakyReLU; 4stems: ELU).
        deconv_activation: activation of the decoder levels (2stems: ReLU; 4stems: ELU).
        batch_norm: batch norm after every encoder and decoder convolution.
        dropout: dropout probability on the first ``dropout_levels`` decoder levels.
        dropout_levels: how many of the deepest decoder levels use dropout
            (never the last, which produces the output channels).
        separate_unets: one U-Net per source (Spleeter) instead of one U-Net
            whose output channels are all the sources (Spectrogram-Channels).
        n_fft: STFT size (and Hann window length), in samples.
        hop_length: STFT hop, in samples.
        bins: lowest frequency bins the U-Net sees; the others are zero in the output.
        input_mode: ``"magnitude"`` (mixture phase reused) or ``"complex"``
            (real and imaginary parts as channels).
        output: ``"mask"`` or ``"spectrogram"`` (see the module docstring).
        ratio_mask: with magnitude masks, Spleeter's ratio mask across sources
            (separation exponent 2) instead of each sigmoid mask alone.
        input_norm: ``"batchnorm"`` (per channel and bin, learned affine and
            running statistics), ``"affine"`` (per channel and bin learned
            scale and shift only) or ``"none"``; always after the input scale.
        input_scale: a magnitude input as ``"log1p"`` (``log1p(|X|)``, this
            suite's default) or ``"linear"`` (``|X|`` as Spleeter feeds it).
        raw_bottleneck: the deepest encoder convolution feeds the decoder
            without batch norm and activation, as Spleeter wires ``conv6``.

    Batch norm needs more than one value per channel in training mode: a
    batch of one fails when the bottleneck is 1 x 1 (``bins`` and the frames
    both at most ``2**depth``); evaluation mode takes any input.
    """

    dimension = "2d"
    extra_arguments = UNET_ARGUMENTS  # valid in presets and overrides beside the signature's
    # Masks are applied frames-major (see _masked_frames_major); False: bins-major.
    fast_layout = True

    def __init__(
        self,
        # Sources and channels
        sources: int = 4,
        channels: int = 2,
        # Main structure (the U-Net's own arguments come as **unet, see UNET_ARGUMENTS)
        depth: int = 6,
        separate_unets: bool = False,
        # Spectrogram
        n_fft: int = 4096,
        hop_length: int = 1024,
        bins: int = 1024,
        # Input and output
        input_mode: InputMode = "magnitude",
        output: SpecOutput = "mask",
        ratio_mask: bool = False,
        input_norm: InputNorm = "batchnorm",
        input_scale: InputScale = "log1p",
        **unet: Any,
    ) -> None:
        super().__init__()
        arguments = constructor_arguments(locals())
        unet = {**UNET_ARGUMENTS, **arguments.pop("unet")}
        unknown = sorted(set(unet) - set(UNET_ARGUMENTS))
        if unknown:
            raise TypeError(f"SpecUNet got unexpected argument(s) {unknown}.")
        self.config = {"dimension": "2d", **arguments, **unet}
        _check_arguments(self.config)
        self.sources, self.channels, self.depth, self.bins = sources, channels, depth, bins
        self.complex_input = input_mode == "complex"
        self.linear_input = input_scale == "linear"
        self.mask = output == "mask"
        self.ratio_mask = ratio_mask and self.mask and not self.complex_input
        self.stft = STFT(n_fft, hop_length)
        self.istft = ISTFT(n_fft, hop_length)
        parts = 2 if self.complex_input else 1
        self.input_norm = bin_norm(input_norm, channels * parts, bins)
        copies, per_unet = (sources, 1) if separate_unets else (1, sources)
        self.unets = nn.ModuleList(
            UNet2d(channels * parts, per_unet * channels * parts, depth, **unet)
            for _ in range(copies)
        )
        init_convolutions(self, "he")
        if not self.mask:
            _shrink_heads(self.unets)

    @property
    def receptive_field_unit(self) -> str:
        """:meth:`receptive_field` counts STFT frames."""
        return "frames"

    def receptive_field(self) -> int:
        """STFT frames that one output frame depends on (along time)."""
        return self.unets[0].receptive_field()

    def receptive_field_samples(self) -> int:
        """Bound on the input samples one output sample depends on: the output
        sample overlaps frames whose centres span ``n_fft`` samples, each sees
        ``receptive_field()`` frames, and each frame spans ``n_fft`` samples."""
        return (self.receptive_field() - 1) * self.stft.hop_length + 2 * self.stft.n_fft

    def reach_samples(self) -> tuple[int, int]:
        """See :meth:`SeparationNet.reach_samples`: an output sample overlaps frames
        whose centres lie within ``n_fft / 2``, each reads the U-Net's reach in
        frames, and each of those frames spans ``n_fft / 2`` on each side."""
        hop, n_fft = self.stft.hop_length, self.stft.n_fft
        return tuple(n_fft + frames * hop for frames in self.unets[0].reach())

    def _window(self, region: int, context: int) -> tuple[int, int]:
        """``(read_from, length)`` relative to the region's start: the reach (as far
        as ``context`` allows), extended with audio on both sides until the frame
        count is a multiple of ``2**depth``."""
        before, after = (min(context, reach) for reach in self.reach_samples())
        length = before + region + after
        hop, multiple = self.stft.hop_length, 2**self.depth
        frames = ceil_to_multiple(num_frames(length, hop), multiple)
        if frames != num_frames(length, hop):
            extra = (frames - 1) * hop - length
            # What the context holds goes first; zeros only where it runs out.
            more_before = min(extra // 2, context - before)
            before, length = before + more_before, length + extra
        return -before, length

    def context_samples(self, region: int) -> int:
        """See :meth:`SeparationNet.context_samples`."""
        start, length = self._window(region, max(self.reach_samples()) + self.stft.n_fft * 4)
        return max(-start, start + length - region)

    def forward(self, mixture: Tensor, context: int = 0) -> Tensor:
        """Separate a mixture.

        Args:
            mixture: ``(batch, channels, time)``: the region to estimate with
                ``context`` samples of real audio on each side.
            context: samples per side around the region, ``time - 2 * context >= 1``.

        Returns:
            estimates ``(batch, sources, channels, time - 2 * context)`` of the region.
        """
        region = self._check_mixture(mixture, context)
        start, length = self._window(region, context)
        window = take(mixture, context + start, length)
        return self._separate(window)[..., -start : -start + region]

    def masked_magnitudes(self, mixture: Tensor, context: int = 0) -> tuple[Tensor, int, int]:
        """The masked magnitudes Spleeter trains on, over the window the net reads.

        Args:
            mixture: ``(batch, channels, time)``, the region with ``context`` on each side.
            context: samples per side around the region.

        Returns:
            ``(magnitudes, start, length)``: ``mask * |X|`` ``(batch, sources, channels,
            bins, frames)`` of the STFT of ``mixture[..., start : start + length]`` (zeros
            outside ``mixture``), so a target's magnitudes are those of the same samples.
        """
        if self.complex_input or not self.mask:
            raise ValueError(
                "masked magnitudes need magnitude masks (input_mode='magnitude', "
                f"output='mask'), this net has input_mode={self.config['input_mode']!r} and "
                f"output={self.config['output']!r}: train it with a waveform loss."
            )
        region = self._check_mixture(mixture, context)
        start, length = self._window(region, context)
        spectrogram = self.stft(take(mixture, context + start, length))[:, :, : self.bins]
        outputs = self._unet_outputs(spectrogram)
        masks = self._mask(outputs, spectrogram.unsqueeze(1))
        return masks * spectrogram.abs().unsqueeze(1), context + start, length

    def _unet_outputs(self, spectrogram: Tensor) -> Tensor:
        """Kept bins ``(b, c, bins, frames)`` complex -> U-Net outputs
        ``(b, s, c, bins, frames, parts)``."""
        features = self.input_norm(self._features(spectrogram))
        outputs = self._run_unets(features)  # (b, s * c * parts, bins, frames)
        parts = 2 if self.complex_input else 1
        return rearrange(
            outputs, "b (s c p) f n -> b s c f n p", s=self.sources, c=self.channels, p=parts
        )

    def _separate(self, mixture: Tensor) -> Tensor:
        """``(b, c, time)`` whose frame count is a multiple of ``2**depth`` ->
        ``(b, s, c, time)``."""
        full = self.stft(mixture)
        spectrogram = full[:, :, : self.bins]  # (b, c, bins, frames)
        outputs = self._unet_outputs(spectrogram)
        above = (0, 0, 0, self.stft.bins - self.bins)
        if self.mask and self.fast_layout:
            estimates = self._masked_frames_major(outputs, spectrogram.unsqueeze(1))
        elif self.mask:
            # Zero masks above the kept bins, times the whole spectrum: the same
            # estimates as padding them, without copying complex spectrograms.
            estimates = F.pad(self._mask(outputs, spectrogram.unsqueeze(1)), above)
            estimates = estimates * full.unsqueeze(1)
        else:
            estimates = F.pad(self._spectrogram(outputs, spectrogram.unsqueeze(1)), above)
        return self.istft(estimates, length=mixture.shape[-1])

    def _masked_frames_major(self, outputs: Tensor, mixture: Tensor) -> Tensor:
        """Masks times the kept bins of ``mixture`` ``(b, 1, c, f, n)`` (the iSTFT
        takes the bins above as zero), as ``(b, s, c, f, n)`` complex whose
        memory runs along the bins.

        The inverse FFT reads along the bins: built in that order, the masked
        spectrogram needs no transposing copy before the iSTFT, and real masks
        multiply the real and imaginary parts without becoming complex first.
        """
        masks = self._mask(outputs, mixture).transpose(-1, -2)
        mixture = mixture.transpose(-1, -2).contiguous()
        # The mixture first: the product takes its layout (contiguous is then free).
        if masks.is_complex():
            return (mixture * masks).contiguous().transpose(-1, -2)
        kept = (torch.view_as_real(mixture) * masks.unsqueeze(-1)).contiguous()
        return torch.view_as_complex(kept).transpose(-1, -2)

    def _features(self, spectrogram: Tensor) -> Tensor:
        """``(b, c, f, n)`` complex -> ``(b, c * parts, f, n)`` real."""
        if not self.complex_input:
            magnitude = spectrogram.abs()
            return magnitude if self.linear_input else torch.log1p(magnitude)
        parts = torch.view_as_real(compress(spectrogram))
        return rearrange(parts, "b c f n p -> b (c p) f n")

    def _run_unets(self, features: Tensor) -> Tensor:
        """Pad bins to a multiple of ``2**depth``, run, crop back (frames already are one)."""
        bins, frames = features.shape[-2:]
        multiple = 2**self.depth
        assert frames % multiple == 0, (frames, multiple)
        padded = F.pad(features, (0, 0, 0, ceil_to_multiple(bins, multiple) - bins))
        outputs = torch.cat([unet(padded) for unet in self.unets], dim=1)
        return outputs[..., :bins, :]

    def _mask(self, outputs: Tensor, mixture: Tensor) -> Tensor:
        """U-Net outputs ``(b, s, c, f, n, parts)`` and mixture spectrogram
        ``(b, 1, c, f, n)`` complex -> masks ``(b, s, c, f, n)``, complex for complex input."""
        if self.complex_input:
            return torch.complex(torch.tanh(outputs[..., 0]), torch.tanh(outputs[..., 1]))
        if self.ratio_mask:
            return _ratio_mask(torch.sigmoid(outputs[..., 0].float()) * mixture.abs())
        return torch.sigmoid(outputs[..., 0])

    def _spectrogram(self, outputs: Tensor, mixture: Tensor) -> Tensor:
        """U-Net outputs ``(b, s, c, f, n, parts)`` and mixture spectrogram
        ``(b, 1, c, f, n)`` complex -> source spectrograms ``(b, s, c, f, n)`` complex."""
        if self.complex_input:
            residual = torch.complex(outputs[..., 0], outputs[..., 1])
            return decompress(compress(mixture) + residual)
        compressed = F.softplus(torch.log1p(mixture.abs()) + outputs[..., 0])
        return torch.expm1(compressed.clamp(max=MAX_LOG_MAGNITUDE)) * torch.sgn(mixture)


def _shrink_heads(unets: nn.ModuleList, factor: float = 1e-2) -> None:
    # Spectrogram outputs are exponentials of the head: a default-initialized
    # head, whose outputs reach +-10 where batch-normed ReLU maps are sparse,
    # makes some first estimates e^10 times too loud and the first gradients
    # huge. A head 100 times smaller starts every source near the mixture, and
    # every layer still receives gradients from the first step.
    with torch.no_grad():
        for unet in unets:
            unet.head.weight.mul_(factor)
            unet.head.bias.zero_()


def _ratio_mask(estimates: Tensor) -> Tensor:
    """Spleeter's masks from source magnitudes ``(b, s, ...)``: ``(e_i^2 + eps/n) /
    (sum_j e_j^2 + eps)``; they sum to one over sources, in float32."""
    power = estimates.float().square()
    return (power + RATIO_EPS / power.shape[1]) / (power.sum(1, keepdim=True) + RATIO_EPS)


def _check_arguments(config: dict) -> None:
    for name in ("sources", "channels", "depth", "filters", "n_fft", "hop_length", "bins"):
        check_at_least(name, config[name], 1)
    check_at_least("dropout_levels", config["dropout_levels"], 0)
    check_odd("kernel_size", config["kernel_size"])
    check_choice("input_mode", config["input_mode"], InputMode.__args__)
    check_choice("output", config["output"], SpecOutput.__args__)
    check_choice("input_norm", config["input_norm"], InputNorm.__args__)
    check_choice("input_scale", config["input_scale"], InputScale.__args__)
    check_choice("conv_activation", config["conv_activation"], Activation.__args__)
    check_choice("deconv_activation", config["deconv_activation"], Activation.__args__)
    if config["ratio_mask"] and config["sources"] < 2:
        raise ValueError(
            "ratio_mask=True needs sources >= 2 (one source would always get the whole "
            f"mixture), got sources={config['sources']}; use ratio_mask=False."
        )
    if not 0.0 <= config["dropout"] < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {config['dropout']!r}.")
    if config["bins"] > config["n_fft"] // 2 + 1:
        raise ValueError(
            f"bins must be at most n_fft // 2 + 1 = {config['n_fft'] // 2 + 1}, "
            f"got bins={config['bins']}; lower bins or raise n_fft."
        )
