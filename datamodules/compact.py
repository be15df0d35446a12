"""Training batches that cross process boundaries small and into memory mapped once.

A loader worker writes the raw stems of a batch (every cached stem, before targets
are summed) into a slot of a :class:`SlotRing`, shared memory that is allocated
once, and hands over only ``(slot, batch)``; the main process reads the slot on
the device, where :func:`decode` forms float32 targets. Fresh shared memory per
batch, as a plain DataLoader does, costs page faults in both processes for every
4 MB segment; a ring costs them once.

The stems travel as int16 when the cache holds 16-bit audio exactly (MUSDB18 is
16-bit PCM at its own rate): the bytes are halved and the float32 values, and so
the batches and the data fingerprint, are bit for bit those of the float path.
A cache that is not exactly 16-bit (resampled audio) travels as float32.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from ablation.files import atomic_write
from ablation.tracks import DataError

INT16_SCALE = 32768.0
# samples per channel checked at once: bounds the memory of the exactness check
CHECK_CHUNK = 1 << 20


def exactly_int16(array: np.ndarray) -> bool:
    """Whether every value is ``n / 32768`` for an int16 ``n`` (so int16 holds it exactly)."""
    for start in range(0, array.shape[-1], CHECK_CHUNK):
        scaled = np.asarray(array[..., start : start + CHECK_CHUNK], np.float32) * INT16_SCALE
        if scaled.size and (
            scaled.min() < -INT16_SCALE
            or scaled.max() > INT16_SCALE - 1
            or not np.array_equal(scaled, np.rint(scaled))
        ):
            return False
    return True


def _verdict_path(array_path: Path) -> Path:
    return array_path.with_name(array_path.name + ".int16.json")


def _cached_exactness(array_path: Path) -> bool:
    """:func:`exactly_int16` of a cache entry, remembered beside it (it reads the whole
    track) for as long as the entry's file is unchanged."""
    stat = array_path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    verdict_path = _verdict_path(array_path)
    try:
        verdict = json.loads(verdict_path.read_text())
        if {k: verdict.get(k) for k in key} == key:
            return bool(verdict["exact"])
    except (OSError, ValueError, KeyError):
        pass
    exact = exactly_int16(np.load(array_path, mmap_mode="r"))
    atomic_write(verdict_path, lambda f: f.write(json.dumps({**key, "exact": exact}).encode()))
    return exact


def compact_dtype(paths: list[Path], progress: bool = True) -> torch.dtype:
    """int16 when every cached track holds 16-bit audio exactly, else float32."""
    for path in tqdm(paths, desc="checking 16-bit exactness", unit="track", disable=not progress):
        if not _cached_exactness(Path(path)):
            return torch.float32
    return torch.int16


def encode_into(out: np.ndarray, chunk: np.ndarray) -> None:
    """Write float32 stems into ``out`` (int16 or float32) exactly (see :func:`decode`)."""
    if out.dtype == np.int16:
        np.multiply(chunk, INT16_SCALE, out=out, casting="unsafe")
    else:
        out[...] = chunk


def add_stem(target: torch.Tensor, stem: torch.Tensor) -> None:
    """``target += stem`` in float32, ``stem`` int16 (times 1/32768) or float32.

    Targets start at zero and their stems are added in their group's order, as the
    worker path does, so the float32 results are bit for bit the same: int16 / 32768
    is exact, and 0 + -0.0 gives +0.0 on either path.
    """
    target.add_(stem, alpha=1 / INT16_SCALE if stem.dtype == torch.int16 else 1.0)


def decode(raw: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """raw: (batch, stems, channels, time) int16 or float32 -> float32 targets
    (batch, len(groups), channels, time), target ``t`` the sum of stems ``groups[t]``."""
    out = torch.zeros(
        (raw.shape[0], len(groups), *raw.shape[2:]), dtype=torch.float32, device=raw.device
    )
    for target, members in enumerate(groups):
        for stem in members:
            add_stem(out[:, target], raw[:, stem])
    return out


@dataclass
class RingSlot:
    """Where a worker left a training batch: ``slot`` of the ring, holding ``batch``."""

    slot: int
    batch: int


class SlotRing:
    """Shared-memory slots for raw training batches, allocated once before workers start.

    Batch ``k`` of this rank goes to slot ``k % slots``. With more slots than
    batches a DataLoader has in flight (``workers * prefetch_factor``, plus the
    one in training and the one Lightning fetches ahead) no slot is rewritten
    before its batch is read; a stamp per slot proves it, so a batch read too
    late fails loudly instead of training on another batch's audio.

    Args:
        slots: number of slots.
        shape: ``(batch, stems, channels, window)`` of one batch.
        dtype: torch.int16 or torch.float32.
    """

    def __init__(self, slots: int, shape: tuple[int, ...], dtype: torch.dtype):
        self.data = torch.zeros((slots, *shape), dtype=dtype).share_memory_()
        # the batch a slot holds; -1 while a worker writes it
        self.stamps = torch.full((slots,), -1, dtype=torch.int64).share_memory_()

    @property
    def slots(self) -> int:
        return self.data.shape[0]

    def write(self, batch: int, fill) -> RingSlot:
        """Call ``fill(numpy view of the slot)`` for ``batch`` and stamp the slot."""
        slot = batch % self.slots
        self.stamps[slot] = -1
        fill(self.data[slot].numpy())
        self.stamps[slot] = batch
        return RingSlot(slot, batch)

    def check(self, ref: RingSlot) -> None:
        """Raise unless the slot still holds ``ref.batch``."""
        found = int(self.stamps[ref.slot])
        if found != ref.batch:
            raise DataError(
                f"training batch {ref.batch} was overwritten in loader slot {ref.slot} (it "
                f"holds batch {found}): expected each training batch to pass through "
                f"MUSDBDataModule.on_after_batch_transfer before {self.slots - 1} more are "
                f"fetched. Do so, or train through Lightning."
            )

    def read(self, ref: RingSlot, groups: list[list[int]], device: torch.device) -> torch.Tensor:
        """The float32 targets of the batch at ``ref``, formed on ``device``."""
        self.check(ref)
        targets = decode(self.data[ref.slot].to(device), groups)
        self.check(ref)  # on the CPU ``decode`` read the slot itself
        return targets


def fill_raw(out: np.ndarray, dataset, places: list[tuple[int, int]]) -> None:
    """Write every cached stem of one item into ``out`` ``(stems, channels, window)``,
    zero outside the tracks; ``places`` as the dataset's ``_place`` returns them."""
    for stem, place in enumerate(places[: out.shape[0]]):
        at, chunk = dataset.stem_chunk(place, stem, out.shape[-1])
        end = at + chunk.shape[-1]
        out[stem, :, :at] = 0
        out[stem, :, end:] = 0
        encode_into(out[stem, :, at:end], chunk)


class RingSegments(Dataset):
    """The items of a training dataset (:class:`datamodules.datasets.RandomSegments`)
    as raw stems in a :class:`SlotRing`: a batch is ``(RingSlot, positions)``.

    Args:
        dataset: the training dataset whose placements and windows are used.
        ring: slots shaped ``(batch, stems, channels, dataset.window)``.
        world: number of ranks (batch ``k`` of a rank starts at position
            ``(k * world + rank) * batch``).
    """

    def __init__(self, dataset, ring: SlotRing, world: int = 1):
        self.dataset, self.ring, self.world = dataset, ring, world

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> tuple[RingSlot, list[int]]:
        assert len(indices) == self.ring.data.shape[1], (len(indices), self.ring.data.shape)
        batch = indices[0] // (len(indices) * self.world)
        ref = self.ring.write(batch, lambda out: self._fill(out, indices))
        return ref, [int(i) for i in indices]

    def _fill(self, out: np.ndarray, indices: list[int]) -> None:
        for item, index in zip(out, indices, strict=True):
            fill_raw(item, self.dataset, self.dataset._place(index))
