"""Separation nets: 1-D :class:`WaveUNet`, 2-D :class:`SpecUNet`, presets and :func:`build`.

Every net maps a mixture ``(batch, channels, time)`` to estimates
``(batch, sources, channels, time)`` for any ``time`` and reports its size,
receptive field and cost through :class:`SeparationNet`.
"""

from ablation.nets.blocks import SeparationNet
from ablation.nets.presets import DIMENSIONS, PRESETS, build
from ablation.nets.spec_unet import SpecUNet
from ablation.nets.unet2d import UNet2d
from ablation.nets.wave_unet import WaveUNet

__all__ = ["DIMENSIONS", "PRESETS", "SeparationNet", "SpecUNet", "UNet2d", "WaveUNet", "build"]
