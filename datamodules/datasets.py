"""Torch datasets over cached stems: random training segments, fixed validation
segments, whole test tracks. All return stems ``(sources, channels, time)``; the
mixture is never stored, it is formed later as the sum of the (augmented) stems."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ablation.constants import ALL_STEMS, SOURCES, target_members, target_names
from ablation.tracks import DataError

REST = "rest"


def resolve_targets(
    targets: str | Sequence[str], stems: tuple[str, ...] = SOURCES
) -> tuple[str, ...]:
    """Turn the ``targets`` argument into the tuple of source names the nets output.

    ``"4stems"`` (drums, bass, other, vocals), ``"2stems"`` (vocals, accompaniment),
    ``"all"`` (every stem of the dataset) or any list of the dataset's ``stems`` and
    ``accompaniment`` (every stem but the vocals). A list that does not cover every
    stem gets a last source ``rest`` (the sum of the others), so the mixture stays
    the sum of the targets.
    """
    targets = check_target_set(targets, stems)
    matrix = mixing_matrix(targets, stems)
    if (matrix.sum(0) > 1).any():
        raise DataError(
            f"targets {list(targets)} overlap (a stem would be counted twice): expected "
            f"disjoint sources, e.g. ['vocals', 'accompaniment'] or ['vocals', 'drums']."
        )
    return targets + ((REST,) if (matrix.sum(0) == 0).any() else ())


def check_target_set(
    targets: str | Sequence[str], stems: tuple[str, ...] = SOURCES
) -> tuple[str, ...]:
    """The target names of ``targets`` (see :func:`ablation.constants.target_names`).

    Raises:
        DataError: for an unknown target-set name; checked before any file is read.
    """
    try:
        return target_names(targets, stems)
    except ValueError as err:
        raise DataError(f"{err} Sources: {_choices(stems)}.") from err


def _choices(stems: tuple[str, ...]) -> list[str]:
    """The targets a dataset with ``stems`` offers."""
    derived = target_members("accompaniment", stems) != ("accompaniment",)
    return [*stems, *(["accompaniment"] if derived else [])]


def mixing_matrix(targets: Sequence[str], stems: tuple[str, ...] = SOURCES) -> np.ndarray:
    """``(len(targets), len(stems))`` 0/1 matrix: which cached stems sum into each target."""
    rows = []
    for name in targets:
        if name == REST:
            rows.append(1 - np.array(rows).sum(0) if rows else np.ones(len(stems)))
            continue
        members = target_members(name, stems)
        unknown = set(members) - set(stems)
        if unknown:
            raise DataError(
                f"unknown target {name!r}: expected sources from {_choices(stems)}, the "
                f"stems of this dataset. Pass --data.targets={ALL_STEMS} or a list of them."
            )
        rows.append(np.array([float(s in members) for s in stems]))
    return np.stack(rows).astype(np.float32)


class CachedArrays:
    """Memory maps of cached tracks, opened lazily in each process.

    ``np.memmap`` objects pickle as full copies, so only the paths travel to
    DataLoader workers; each worker maps the files itself.
    """

    def __init__(self, paths: Sequence[Path], stems: tuple[str, ...] = SOURCES):
        self.paths = list(paths)
        self.stems = tuple(stems)  # the names along each array's first axis
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


def collate_prebuilt(batch):
    """The datasets below build whole batches themselves (``__getitems__``)."""
    return batch


def item_rng(seed: int, position: int, purpose: int) -> np.random.Generator:
    """The generator of one stream position: what an item holds is a function of the
    data seed and its position alone (DESIGN.md, fairness rule), never of torch's
    global RNG, the worker that builds it or the point a run resumed from."""
    return np.random.default_rng([seed, position, purpose])


# ``purpose`` of :func:`item_rng`: independent draws for placement, epoch order, augmentation.
PLACE, ORDER, AUGMENT = 0, 1, 2


class _StemDataset(Dataset):
    """Writes stems straight from the memory maps into the batch tensor.

    An item is a window of ``context + segment + context`` samples: the loss
    region of ``segment`` samples in the middle and real audio of the same
    track as context on both sides, zero only where the track really starts
    or ends. One copy per sample and no intermediate arrays: memory traffic,
    not arithmetic, bounds the loader. In a worker the batch is allocated in
    shared memory, so handing it to the main process costs no further copy.
    """

    def __init__(
        self, arrays: CachedArrays, targets: Sequence[str], segment: int, context: int = 0
    ):
        self.arrays = arrays
        # stem indices summed into each target, e.g. accompaniment -> [0, 1, 2]
        self.groups = [np.flatnonzero(row).tolist() for row in mixing_matrix(targets, arrays.stems)]
        self.segment = segment
        self.context = context

    @property
    def window(self) -> int:
        """Samples of one item: the loss region and its context on both sides."""
        return self.segment + 2 * self.context

    def _place(self, index: int) -> list[tuple[int, int]]:
        """(track, loss-region offset) for each cached stem of item ``index``."""
        raise NotImplementedError

    def padding(self, index: int) -> tuple[int, int]:
        """Zero samples at the start and at the end of item ``index``'s window (the
        most over its stems): where its tracks start or end, not real audio."""
        left = right = 0
        places = self._place(index)
        for stem in {stem for stems in self.groups for stem in stems}:
            track, offset = places[stem]
            start = offset - self.context
            left = max(left, -start)
            right = max(right, start + self.window - self.arrays.lengths[track])
        return min(left, self.window), min(right, self.window)

    def _fill(self, out: np.ndarray, places: list[tuple[int, int]]) -> None:
        """Write one item into ``out`` ``(targets, channels, window)``, zero outside the tracks."""
        for target, stems in zip(out, self.groups, strict=True):
            target[...] = 0
            for stem in stems:
                at, chunk = self.stem_chunk(places[stem], stem, out.shape[-1])
                target[:, at : at + chunk.shape[-1]] += chunk

    def stem_chunk(self, place: tuple[int, int], stem: int, length: int) -> tuple[int, np.ndarray]:
        """The real audio of ``stem`` in a window of ``length`` samples whose loss region
        starts at ``place`` (track, offset): its first sample's index in the window and
        the memory-mapped samples ``(channels, time)``."""
        track, offset = place
        start = offset - self.context
        first = max(start, 0)
        return first - start, self.arrays[track][stem, :, first : start + length]

    def _batch(self, indices: Sequence[int], length: int) -> torch.Tensor:
        shape = (len(indices), len(self.groups), self.arrays.channels, length)
        out = torch.empty(shape)
        if torch.utils.data.get_worker_info() is not None:
            out = out.share_memory_()
        for item, index in zip(out.numpy(), indices, strict=True):
            self._fill(item, self._place(index))
        return out

    def __getitems__(self, indices: list[int]) -> torch.Tensor:
        return self._batch(indices, self.window)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self._batch([index], self.window)[0]


class RandomSegments(_StemDataset):
    """Random training windows, addressed by their position in the data stream.

    Item ``position`` is drawn from :func:`item_rng` ``(seed, position)`` alone, so
    two runs with the same data seed train on the same bytes whatever their net,
    initialisation, worker count or resume point. ``len()`` is one epoch:
    ``segments_per_track`` items per track; position ``p`` belongs to epoch
    ``p // len()``. A sampler (:class:`datamodules.sampler.StreamSampler`) hands
    out positions; any integer is a valid index.

    Args:
        arrays: cached training tracks.
        targets: names of the sources to return (see :func:`resolve_targets`).
        segment: loss-region length in samples.
        segments_per_track: items per track per epoch.
        remix: draw each stem from its own random track and offset (Open-Unmix,
            Demucs); otherwise all stems share one track and offset, and every
            track appears ``segments_per_track`` times per epoch.
        context: real-audio samples around the loss region on each side (what the
            items carry: the part of the placement context this net reads).
        seed: the data seed.
        place_context: samples kept inside the track on each side of every loss
            region, where the track is long enough (default ``context``). The sweep's
            configured context, the same for every cell, so the stream is too: the
            deepest cell's context then lies in real audio, and a shallow cell's
            items are the same loss regions with less of that context read.
    """

    def __init__(
        self,
        arrays,
        targets,
        segment: int,
        segments_per_track: int,
        remix: bool,
        context: int = 0,
        seed: int = 0,
        place_context: int | None = None,
    ):
        super().__init__(arrays, targets, segment, context)
        self.segments_per_track = segments_per_track
        self.remix = remix
        self.seed = seed
        self.place_context = context if place_context is None else place_context
        self._orders: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.arrays) * self.segments_per_track

    def _offset(self, rng: np.random.Generator, track: int) -> int:
        """A loss-region offset with ``place_context`` of the track on both sides; a
        track shorter than that window places it anywhere (its items carry zeros, and
        the fairness record counts them)."""
        length, margin = self.arrays.lengths[track], self.place_context
        room = length - self.segment - 2 * margin
        if room >= 0:
            return margin + int(rng.integers(room + 1))
        return int(rng.integers(max(length - self.segment, 0) + 1))

    def _track_order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            order = item_rng(self.seed, epoch, ORDER).permutation(len(self))
            self._orders = {epoch: order // self.segments_per_track}
        return self._orders[epoch]

    def _place(self, index: int) -> list[tuple[int, int]]:
        rng = item_rng(self.seed, index, PLACE)
        if not self.remix:
            track = int(self._track_order(index // len(self))[index % len(self)])
            return [(track, self._offset(rng, track))] * len(self.arrays.stems)
        tracks = rng.integers(len(self.arrays), size=len(self.arrays.stems)).tolist()
        return [(t, self._offset(rng, t)) for t in tracks]

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, list[int]]:
        """Stems ``(batch, sources, channels, window)`` and the items' stream positions
        (the augmentation draws its parameters from them on the device)."""
        return self._batch(indices, self.window), [int(i) for i in indices]


class FixedSegments(_StemDataset):
    """Validation windows: ``per_track`` evenly spaced loss regions of every track
    with their context, the same every epoch whatever the training seed."""

    def __init__(self, arrays, targets, segment: int, per_track: int, context: int = 0):
        super().__init__(arrays, targets, segment, context)
        self.items = [
            (track, int(offset))
            for track, length in enumerate(arrays.lengths)
            for offset in np.linspace(0, max(length - segment, 0), per_track).round()
        ]

    def __len__(self) -> int:
        return len(self.items)

    def _place(self, index: int) -> list[tuple[int, int]]:
        return [self.items[index]] * len(self.arrays.stems)


class WholeTracks(_StemDataset):
    """Test items: one whole track each, as ``(stems, name)``."""

    def __init__(self, arrays, targets, names: Sequence[str]):
        super().__init__(arrays, targets, segment=0)
        self.names = list(names)

    def __len__(self) -> int:
        return len(self.arrays)

    def _place(self, index: int) -> list[tuple[int, int]]:
        return [(index, 0)] * len(self.arrays.stems)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        return self._batch([index], self.arrays.lengths[index])[0], self.names[index]

    __getitems__ = None  # whole tracks differ in length: batches of one, collated by torch
