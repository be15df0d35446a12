"""Named architectures (the papers' models) and :func:`build`.

Each preset maps to constructor arguments plus ``"dimension"`` (``"1d"`` ->
:class:`WaveUNet`, ``"2d"`` -> :class:`SpecUNet`). Every preset takes a
stereo mixture. Depth and the other arguments can be overridden, which is how
the sweep grids vary them: ``build("wave-unet-m6", depth=3)``.
"""

import copy
import inspect
from typing import Any

import torch
from torch import nn

from ablation.nets.spec_unet import SpecUNet
from ablation.nets.wave_unet import WaveUNet

DIMENSIONS: dict[str, type[nn.Module]] = {"1d": WaveUNet, "2d": SpecUNet}
# Checkpoints written before the vocabulary was one named the axis "family".
_LEGACY_FAMILIES = {"wave": "1d", "spec": "2d", "1d": "1d", "2d": "2d"}

_WAVE_UNET_M4: dict[str, Any] = {
    "dimension": "1d",
    "sources": 2,
    "channels": 2,
    "depth": 12,
    "filters": 24,
    "growth": "add",
    "down_kernel": 15,
    "up_kernel": 5,
    "downsampling": "decimate",
    "upsampling": "linear",
    "padding": "valid",
    "leaky_slope": 0.2,
    "output": "difference",
    "output_activation": "tanh",
}

_SPLEETER: dict[str, Any] = {
    "dimension": "2d",
    "channels": 2,
    "depth": 6,
    "filters": 16,
    "kernel_size": 5,
    "leaky_slope": 0.2,
    "conv_activation": "leaky_relu",
    "deconv_activation": "relu",
    "batch_norm": True,
    "dropout": 0.5,
    "dropout_levels": 3,
    "separate_unets": True,
    "n_fft": 4096,
    "hop_length": 1024,
    "bins": 1024,
    "input_mode": "magnitude",
    "output": "mask",
    "ratio_mask": True,
    "input_norm": "batchnorm",
}

PRESETS: dict[str, dict[str, Any]] = {
    # Stoller et al. 2018, model M4: stereo vocals / accompaniment (input 147443
    # samples for 16389 output samples).
    "wave-unet-m4": _WAVE_UNET_M4,
    # The same net for the four MUSDB18 stems.
    "wave-unet-m6": {**_WAVE_UNET_M4, "sources": 4},
    # Spleeter (Jansson et al. 2017 U-Net): one U-Net per source, 16 to 512 filters.
    "spleeter-2stems": {**_SPLEETER, "sources": 2},
    # Spleeter's architecture (4stems.json: ELU in the encoder and the decoder) with
    # this suite's input (log1p|X| and a learned per-bin batch norm) and bottleneck,
    # trained with the suite's waveform loss: not Spleeter's recipe (see the next one).
    "spleeter-4stems": {
        **_SPLEETER,
        "sources": 4,
        "conv_activation": "elu",
        "deconv_activation": "elu",
    },
    # Spleeter's own net, input and bottleneck as its code wires them: |X| unscaled and
    # unnormalized into the U-Net, conv6 into the decoder without batch norm and ELU.
    # Trained with its recipe (L1 on masked magnitudes, Adam 1e-4, batch 4, ~512
    # frames) by sweeps/spleeter_recipe.yaml.
    "spleeter-4stems-original": {
        **_SPLEETER,
        "sources": 4,
        "conv_activation": "elu",
        "deconv_activation": "elu",
        "input_scale": "linear",
        "input_norm": "none",
        "raw_bottleneck": True,
    },
    # Oh et al. 2018: one U-Net whose output channels are the sources'
    # magnitude spectrograms. The STFT geometry is Spleeter's, so the 2-D
    # presets differ only in the structure they are named after.
    "spectrogram-channels": {
        **_SPLEETER,
        "sources": 4,
        "separate_unets": False,
        "output": "spectrogram",
        "ratio_mask": False,
    },
}


def build(name_or_dict: str | dict[str, Any], **overrides: Any) -> nn.Module:
    """Build a net from a preset name or a dict of arguments with ``"dimension"``.

    Args:
        name_or_dict: a key of :data:`PRESETS`, or a dict such as a net's
            ``config`` (``{"dimension": "1d" | "2d", **constructor_args}``; the
            ``"family": "wave" | "spec"`` of older checkpoints is read too).
        **overrides: constructor arguments replacing the preset's, e.g. ``depth=4``.

    Returns:
        the :class:`WaveUNet` or :class:`SpecUNet`.

    Raises:
        ValueError: unknown preset, dimension or argument (the message lists the
            valid ones), or an invalid argument value.
    """
    arguments = _resolve(name_or_dict)
    dimension, cls = _net_class(arguments)
    arguments.update(overrides)
    valid = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
    valid = [v for v in valid if v != "unet"] + list(getattr(cls, "extra_arguments", {}))
    unknown = sorted(set(arguments) - set(valid))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for {cls.__name__}; valid arguments: {valid}."
        )
    _check_size(cls, dimension, arguments)
    return cls(**arguments)


# Nets above this many parameters (1 GiB of float32 weights) are refused before they are
# built: the grids' largest has about 40 million.
MAX_PARAMETERS = 2**28
# A 1-D net of depth d extends its input to a multiple of 2**d samples: 2**20 is 24 s.
MAX_1D_DEPTH = 20


def _check_size(cls: type[nn.Module], dimension: str, arguments: dict[str, Any]) -> None:
    """Refuse a net too large to allocate, built first on the meta device (shapes, no memory),
    and a 1-D net whose inputs come in steps too long to hold (``2**depth`` samples)."""
    depth = arguments.get("depth")
    if dimension == "1d" and isinstance(depth, int) and depth > MAX_1D_DEPTH:
        raise ValueError(
            f"a 1d net of depth {depth} reads its input in steps of 2**{depth} samples (its "
            f"reach doubles with every level: {2**depth / 44100 / 3600:.3g} hours at 44.1 kHz), "
            f"expected depth {MAX_1D_DEPTH} at most: lower --model.depth (Wave-U-Net uses 12)."
        )
    try:
        with torch.device("meta"):
            parameters = sum(p.numel() for p in cls(**arguments).parameters())
    except RuntimeError:  # a size overflowing int64: far beyond any memory
        parameters = None
    if parameters is None or parameters > MAX_PARAMETERS:
        shown = "more than 2**63" if parameters is None else f"{parameters:.3g}"
        raise ValueError(
            f"a {dimension} net of depth {arguments.get('depth')} and {arguments.get('filters')} "
            f"filters would have {shown} parameters, expected at most {MAX_PARAMETERS:.3g} "
            f"(1 GiB of weights): lower --model.depth or --model.filters."
        )


def _net_class(arguments: dict[str, Any]) -> tuple[str, type[nn.Module]]:
    """The dimension and net class a description names (taking its ``dimension``, or the
    ``family`` of older checkpoints, out of ``arguments``)."""
    legacy = _LEGACY_FAMILIES.get(arguments.pop("family", None))
    dimension = arguments.pop("dimension", legacy)
    if dimension not in DIMENSIONS:
        raise ValueError(
            f"a net description needs 'dimension' in {sorted(DIMENSIONS)}, got {dimension!r}."
        )
    return dimension, DIMENSIONS[dimension]


def largest_depth(name_or_dict: str | dict[str, Any], segment_samples: int) -> tuple[int, str]:
    """The deepest net of this description whose coarsest level still holds one step of
    a loss region of ``segment_samples``: every level halves the samples of a 1-D net, and
    the frames (``hop_length`` samples each) and bins of a 2-D net. Returns the depth and
    what the segment holds, in words."""
    arguments = _resolve(name_or_dict)
    dimension, cls = _net_class(arguments)
    value = {**{n: p.default for n, p in inspect.signature(cls).parameters.items()}, **arguments}
    if dimension == "1d":
        return max(0, segment_samples.bit_length() - 1), f"{segment_samples} samples"
    frames, bins = segment_samples // value["hop_length"], value["bins"]
    return max(0, min(frames, bins).bit_length() - 1), f"{frames} frames and {bins} bins"


def check_depth(name_or_dict: str | dict[str, Any], segment: float, sample_rate: int) -> None:
    """Refuse, before anything is built, a depth whose coarsest level is longer than the
    loss region (a segment of ``segment`` seconds at ``sample_rate``)."""
    arguments = _resolve(name_or_dict)
    depth, dimension = arguments.get("depth"), arguments.get("dimension", "")
    largest, held = largest_depth(arguments, round(segment * sample_rate))
    if isinstance(depth, int) and depth > largest:
        raise ValueError(
            f"a {dimension} net of depth {depth} halves its input {depth} times (steps of "
            f"2**{depth} samples or frames), but a {segment:g} s segment at {sample_rate} Hz "
            f"holds {held}: expected depth {largest} at most, the largest this segment and "
            f"sample rate allow. Lower the depth (--cell, --model.depth) or lengthen "
            f"--data.segment."
        )


def _resolve(name_or_dict: str | dict[str, Any]) -> dict[str, Any]:
    if isinstance(name_or_dict, dict):
        return copy.deepcopy(name_or_dict)
    if name_or_dict not in PRESETS:
        raise ValueError(f"unknown net preset {name_or_dict!r}; valid presets: {sorted(PRESETS)}.")
    return copy.deepcopy(PRESETS[name_or_dict])
