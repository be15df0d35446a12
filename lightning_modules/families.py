"""One thin LightningModule per U-Net family: typed net arguments, shared training.

Each module starts from a preset of :data:`ablation.nets.PRESETS` and overrides
what a sweep varies (an argument left at None keeps the preset's value). The
number of sources and audio channels always come from the data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

from ablation.constants import SAMPLE_RATE
from ablation.nets import PRESETS
from ablation.nets.spec_unet import InputMode, SpecOutput
from ablation.nets.wave_unet import Downsampling, Growth, Padding, Upsampling, WaveOutput
from lightning_modules.separation import SeparationModule


def net_config(
    preset: str,
    sources: Sequence[str],
    channels: int,
    sample_rate: int,
    overrides: dict[str, Any],
) -> dict[str, Any]:
    """``ablation.nets.build`` arguments: the preset, the overrides that are not None,
    and the data's number of sources and channels; a 2-D net's STFT keeps the preset's
    duration at the data's sample rate."""
    if preset not in PRESETS:
        raise ValueError(f"unknown net preset {preset!r}; valid presets: {sorted(PRESETS)}.")
    chosen = {name: value for name, value in overrides.items() if value is not None}
    config = {**PRESETS[preset], **chosen, "sources": len(sources), "channels": channels}
    if config["dimension"] == "2d":
        return stft_for_rate(config, sample_rate, overrides)
    return config


def stft_for_rate(config: dict[str, Any], sample_rate: int, overrides: dict[str, Any]) -> dict:
    """Keep the preset's STFT duration in seconds at another sample rate.

    Spleeter's 4096/1024 STFT is 93/23 ms at 44.1 kHz; at 11.025 kHz the same
    window is 1024/256. Sizes stay powers of two, the bin width (Hz) stays the
    same, so ``bins`` keeps its cut-off frequency (capped at Nyquist). Values the
    user set explicitly are left alone.
    """
    if sample_rate == SAMPLE_RATE:
        return config
    scale = 2 ** round(math.log2(sample_rate / SAMPLE_RATE))
    scaled = dict(config)
    for key in ("n_fft", "hop_length"):
        if overrides.get(key) is None:
            scaled[key] = max(16, int(config[key] * scale))
    if overrides.get("bins") is None:
        scaled["bins"] = min(config["bins"], scaled["n_fft"] // 2 + 1)
    return scaled


def drop_saved_only(training: dict[str, Any]) -> None:
    """Remove the hyper-parameters a checkpoint holds that are no arguments.

    ``load_from_checkpoint`` passes every saved hyper-parameter to a constructor
    that takes ``**kwargs``: the resolved ``net_config`` (rebuilt here from the
    preset and overrides, as the CLI's resume does) and LightningCLI's ``_class_path``.
    """
    training.pop("net_config", None)
    for key in [k for k in training if k.startswith("_")]:
        del training[key]


class WaveUNetModule(SeparationModule):
    """Wave-U-Net (1-D, waveform) training; see :class:`SeparationModule` for the rest.

    Args:
        preset: a 1-D (``"dimension": "1d"``) preset of :data:`ablation.nets.PRESETS`.
        depth: down/up levels.
        filters: filters of the first level.
        growth: ``"add"`` or ``"double"`` filters per level.
        down_kernel: kernel of the downsampling-side convolutions.
        up_kernel: kernel of the upsampling-side convolutions.
        downsampling: ``"decimate"`` or ``"strided"``.
        upsampling: ``"linear"``, ``"learned"`` or ``"transposed"``.
        padding: ``"valid"`` (input context) or ``"same"``.
        output: ``"difference"`` (last source = mixture - others) or ``"direct"``.
        channels: audio channels (from the data).
        Other arguments: see :class:`SeparationModule`.
    """

    dimension = "1d"

    def __init__(
        self,
        # Net: preset and overrides (None keeps the preset's value)
        preset: str = "wave-unet-m6",
        depth: int | None = None,
        filters: int | None = None,
        growth: Growth | None = None,
        down_kernel: int | None = None,
        up_kernel: int | None = None,
        downsampling: Downsampling | None = None,
        upsampling: Upsampling | None = None,
        padding: Padding | None = None,
        output: WaveOutput | None = None,
        # Data, loss, optimization and logging: see SeparationModule
        **training: Any,
    ):
        overrides = {
            "depth": depth, "filters": filters, "growth": growth, "down_kernel": down_kernel,
            "up_kernel": up_kernel, "downsampling": downsampling, "upsampling": upsampling,
            "padding": padding, "output": output,
        }  # fmt: skip
        drop_saved_only(training)
        super().__init__(partial(net_config, preset, overrides=overrides), **training)


class SpecUNetModule(SeparationModule):
    """Spectrogram U-Net (2-D, STFT inside the net) training; see
    :class:`SeparationModule` for the rest.

    Args:
        preset: a 2-D (``"dimension": "2d"``) preset of :data:`ablation.nets.PRESETS`
            (``"spleeter-4stems"``, ``"spectrogram-channels"``, ...).
        depth: down/up levels.
        filters: filters of the first level (doubled at every level).
        kernel_size: kernel of the strided convolutions.
        dropout: dropout probability of the deepest decoder levels.
        separate_unets: one U-Net per source instead of one for all.
        n_fft: STFT size in samples (default: the preset's, scaled to keep its
            duration when the data's sample rate is not 44.1 kHz).
        hop_length: STFT hop in samples (scaled likewise).
        bins: lowest frequency bins the U-Net sees.
        input_mode: ``"magnitude"`` or ``"complex"``.
        output: ``"mask"`` or ``"spectrogram"``.
        channels: audio channels (from the data).
        Other arguments: see :class:`SeparationModule`.
    """

    dimension = "2d"

    def __init__(
        self,
        # Net: preset and overrides (None keeps the preset's value)
        preset: str = "spleeter-4stems",
        depth: int | None = None,
        filters: int | None = None,
        kernel_size: int | None = None,
        dropout: float | None = None,
        separate_unets: bool | None = None,
        n_fft: int | None = None,
        hop_length: int | None = None,
        bins: int | None = None,
        input_mode: InputMode | None = None,
        output: SpecOutput | None = None,
        # Data, loss, optimization and logging: see SeparationModule
        **training: Any,
    ):
        overrides = {
            "depth": depth, "filters": filters, "kernel_size": kernel_size, "dropout": dropout,
            "separate_unets": separate_unets, "n_fft": n_fft, "hop_length": hop_length,
            "bins": bins, "input_mode": input_mode, "output": output,
        }  # fmt: skip
        drop_saved_only(training)
        super().__init__(partial(net_config, preset, overrides=overrides), **training)
