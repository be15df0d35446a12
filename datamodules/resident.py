"""Training stems resident on the device: segments are cut, remixed and augmented
where the net runs, with no loader workers and no per-step host-to-device copy.

What each item holds is still drawn on the CPU by the training dataset's own code
(:class:`datamodules.datasets.RandomSegments`, from ``item_rng(seed, position)``);
only the copy of the chosen windows happens on the device, so its batches are bit
for bit those of the worker path (:mod:`datamodules.compact`) for the same seed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from datamodules.compact import add_stem, encode_into

log = logging.getLogger(__name__)

# What a training batch of the resident path carries instead of stems (with its positions).
RESIDENT = "resident"
# Share of the free memory the stems may take: the net, its activations and the
# optimizer need the rest.
MEMORY_SHARE = 0.75


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: the accelerator's, or the host's available RAM."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def resident_bytes(dataset, dtype: torch.dtype) -> int:
    """Bytes of :class:`ResidentStems` for ``dataset``'s tracks and window."""
    arrays = dataset.arrays
    stems, channels = arrays[0].shape[:2]
    samples = sum(arrays.lengths) + dataset.window * (len(arrays) + 1)
    return stems * channels * samples * torch.empty((), dtype=dtype).element_size()


def fits(dataset, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether the stems fit on ``device``; says in one line why not (then the caller
    falls back to loader workers)."""
    needed, free = resident_bytes(dataset, dtype), available_bytes(device)
    if needed <= MEMORY_SHARE * free:
        return True
    log.warning(
        "resident training data needs %.2f GB but %s has %.2f GB free (%.0f %% usable): "
        "falling back to loader workers; set --data.resident=false to silence this.",
        needed / 1e9,
        device,
        free / 1e9,
        100 * MEMORY_SHARE,
    )
    return False


class ResidentStems:
    """Every training track in one ``(stems, channels, time)`` tensor on ``device``,
    each with ``window`` zeros before and after it: any window of the dataset
    (which reaches at most ``context`` beyond a track) is one slice, zero outside
    the track as in the worker path.

    Args:
        dataset: the training dataset (``arrays``, ``window``, ``context``, ``groups``, ``_place``).
        dtype: torch.int16 (exact 16-bit caches) or torch.float32.
        device: where the stems live.
        progress: show a progress bar while copying.
    """

    def __init__(self, dataset, dtype: torch.dtype, device: torch.device, progress: bool = True):
        self.dataset = dataset
        arrays, window = dataset.arrays, dataset.window
        self.starts, end = [], window
        for length in arrays.lengths:
            self.starts.append(end)
            end += length + window
        stems, channels = arrays[0].shape[:2]
        self.data = torch.zeros((stems, channels, end), dtype=dtype, device=device)
        numpy_dtype = np.int16 if dtype == torch.int16 else np.float32
        for track in tqdm(
            range(len(arrays)), desc=f"training stems to {device}", disable=not progress
        ):
            host = np.empty(arrays[track].shape, numpy_dtype)
            encode_into(host, arrays[track])
            start = self.starts[track]
            self.data[..., start : start + host.shape[-1]].copy_(torch.from_numpy(host))

    @property
    def device(self) -> torch.device:
        return self.data.device

    def batch(self, positions: Sequence[int]) -> torch.Tensor:
        """Float32 targets ``(batch, targets, channels, window)`` of the items at
        ``positions``, summed straight from the resident stems (no raw copy)."""
        dataset = self.dataset
        window, context, groups = dataset.window, dataset.context, dataset.groups
        shape = (len(positions), len(groups), self.data.shape[1], window)
        out = torch.zeros(shape, dtype=torch.float32, device=self.device)
        for item, position in zip(out, positions, strict=True):
            places = dataset._place(int(position))
            for target, members in zip(item, groups, strict=True):
                for stem in members:
                    track, offset = places[stem]
                    start = self.starts[track] + offset - context
                    add_stem(target, self.data[stem, :, start : start + window])
        return out


class ResidentPositions(torch.utils.data.Dataset):
    """Training items of the resident path: a batch is ``(RESIDENT, positions)``."""

    def __init__(self, items_per_epoch: int):
        self.items_per_epoch = items_per_epoch

    def __len__(self) -> int:
        return self.items_per_epoch

    def __getitems__(self, indices: list[int]) -> tuple[str, list[int]]:
        return RESIDENT, [int(i) for i in indices]
