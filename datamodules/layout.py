"""Kept only for ``datamodules/datasets.py``, which imports :class:`DataError` from here and
is being changed by another engineer; the layout code lives in :mod:`ablation.tracks.layout`.
Delete this module once that import reads ``from ablation.tracks import DataError``."""

from ablation.tracks.layout import DataError

__all__ = ["DataError"]
