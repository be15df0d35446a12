"""LightningModules of the suite: the shared :class:`SeparationModule` and one thin
subclass per U-Net family, plus the callbacks every run gets."""

from lightning_modules.families import SpecUNetModule, WaveUNetModule
from lightning_modules.separation import SeparationModule

__all__ = ["SeparationModule", "SpecUNetModule", "WaveUNetModule"]
