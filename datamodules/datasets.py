"""Torch datasets over cached stems: random training segments, fixed validation
segments, whole test tracks. All return stems ``(sources, channels, time)``; the
mixture is never stored, it is formed later as the sum of the (augmented) stems."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ablation.constants import SOURCES, target_names
from datamodules.layout import DataError

DERIVED = {"accompaniment": ("drums", "bass", "other")}
REST = "rest"


def resolve_targets(targets: str | Sequence[str]) -> tuple[str, ...]:
    """Turn the ``targets`` argument into the tuple of source names the nets output.

    ``"4stems"`` (drums, bass, other, vocals), ``"2stems"`` (vocals, accompaniment)
    or any list of ``drums, bass, other, vocals, accompaniment``. A list that does
    not cover all four stems gets a last source ``rest`` (the sum of the others),
    so the mixture stays the sum of the targets.
    """
    try:
        targets = target_names(targets)
    except ValueError as err:
        raise DataError(f"{err} Sources: {[*SOURCES, *DERIVED]}.") from err
    matrix = mixing_matrix(targets)
    if (matrix.sum(0) > 1).any():
        raise DataError(
            f"targets {list(targets)} overlap (a stem would be counted twice): expected "
            f"disjoint sources, e.g. ['vocals', 'accompaniment'] or ['vocals', 'drums']."
        )
    return targets + ((REST,) if (matrix.sum(0) == 0).any() else ())


def mixing_matrix(targets: Sequence[str]) -> np.ndarray:
    """``(len(targets), 4)`` 0/1 matrix: which cached stems sum into each target."""
    rows = []
    for name in targets:
        if name == REST:
            rows.append(1 - np.array(rows).sum(0) if rows else np.ones(len(SOURCES)))
            continue
        members = DERIVED.get(name, (name,))
        unknown = set(members) - set(SOURCES)
        if unknown:
            raise DataError(
                f"unknown target {name!r}: expected sources from {[*SOURCES, *DERIVED]}."
            )
        rows.append(np.array([float(s in members) for s in SOURCES]))
    return np.stack(rows).astype(np.float32)


class CachedArrays:
    """Memory maps of cached tracks, opened lazily in each process.

    ``np.memmap`` objects pickle as full copies, so only the paths travel to
    DataLoader workers; each worker maps the files itself.
    """

    def __init__(self, paths: Sequence[Path]):
        self.paths = list(paths)
        shapes = [np.load(p, mmap_mode="r").shape for p in self.paths]
        self.lengths = [int(shape[-1]) for shape in shapes]
        self.channels = int(shapes[0][1]) if shapes else 0
        self._open: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> np.ndarray:
        if index not in self._open:
            self._open[index] = np.load(self.paths[index], mmap_mode="r")
        return self._open[index]

    def __getstate__(self):
        return {**self.__dict__, "_open": {}}


def collate_prebuilt(batch: torch.Tensor) -> torch.Tensor:
    """The datasets below build whole batches themselves (``__getitems__``)."""
    return batch


class _StemDataset(Dataset):
    """Writes stems straight from the memory maps into the batch tensor.

    One copy per sample and no intermediate arrays: at 4 MB per 3 s item, memory
    traffic, not arithmetic, bounds the loader. In a worker the batch is allocated
    in shared memory, so handing it to the main process costs no further copy.
    """

    def __init__(self, arrays: CachedArrays, targets: Sequence[str], segment: int):
        self.arrays = arrays
        # stem indices summed into each target, e.g. accompaniment -> [0, 1, 2]
        self.groups = [np.flatnonzero(row).tolist() for row in mixing_matrix(targets)]
        self.segment = segment

    def _place(self, index: int) -> list[tuple[int, int]]:
        """(track, offset) for each of the four stems of item ``index``."""
        raise NotImplementedError

    def _fill(self, out: np.ndarray, places: list[tuple[int, int]]) -> None:
        """Write one item into ``out`` ``(targets, channels, time)``, zero-padding short reads."""
        for target, stems in zip(out, self.groups, strict=True):
            target[...] = 0
            for stem in stems:
                track, offset = places[stem]
                chunk = self.arrays[track][stem, :, offset : offset + out.shape[-1]]
                target[:, : chunk.shape[-1]] += chunk

    def _batch(self, indices: Sequence[int], length: int) -> torch.Tensor:
        shape = (len(indices), len(self.groups), self.arrays.channels, length)
        out = torch.empty(shape)
        if torch.utils.data.get_worker_info() is not None:
            out = out.share_memory_()
        for item, index in zip(out.numpy(), indices, strict=True):
            self._fill(item, self._place(index))
        return out

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self._batch(indices, self.segment)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._batch([index], self.segment)[0]


class RandomSegments(_StemDataset):
    """Random training segments: ``segments_per_track`` per track and epoch.

    Draws come from torch's global generator, which Lightning seeds from the
    config and DataLoader reseeds per worker and epoch, so runs are reproducible
    and every epoch sees new segments.

    Args:
        arrays: cached training tracks.
        targets: names of the sources to return (see :func:`resolve_targets`).
        segment: segment length in samples.
        segments_per_track: items per track per epoch.
        remix: draw each stem from its own random track and offset (Open-Unmix,
            Demucs); otherwise all stems share one track and offset.
    """

    def __init__(self, arrays, targets, segment: int, segments_per_track: int, remix: bool):
        super().__init__(arrays, targets, segment)
        self.segments_per_track = segments_per_track
        self.remix = remix

    def __len__(self) -> int:
        return len(self.arrays) * self.segments_per_track

    def _offset(self, track: int) -> int:
        room = max(self.arrays.lengths[track] - self.segment, 0)
        return int(torch.randint(room + 1, ()).item())

    def _place(self, index: int) -> list[tuple[int, int]]:
        if not self.remix:
            track = index // self.segments_per_track
            return [(track, self._offset(track))] * len(SOURCES)
        tracks = torch.randint(len(self.arrays), (len(SOURCES),)).tolist()
        return [(t, self._offset(t)) for t in tracks]


class FixedSegments(_StemDataset):
    """Validation segments: ``per_track`` evenly spaced windows of every track,
    the same every epoch whatever the training seed."""

    def __init__(self, arrays, targets, segment: int, per_track: int):
        super().__init__(arrays, targets, segment)
        self.items = [
            (track, int(offset))
            for track, length in enumerate(arrays.lengths)
            for offset in np.linspace(0, max(length - segment, 0), per_track).round()
        ]

    def __len__(self) -> int:
        return len(self.items)

    def _place(self, index: int) -> list[tuple[int, int]]:
        return [self.items[index]] * len(SOURCES)


class WholeTracks(_StemDataset):
    """Test items: one whole track each, as ``(stems, name)``."""

    def __init__(self, arrays, targets, names: Sequence[str]):
        super().__init__(arrays, targets, segment=0)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.arrays)

    def _place(self, index: int) -> list[tuple[int, int]]:
        return [(index, 0)] * len(SOURCES)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self._batch([index], self.arrays.lengths[index])[0], self.names[index]

    __getitems__ = None  # whole tracks differ in length: batches of one, collated by torch
