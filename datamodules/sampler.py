"""The order in which training items are drawn: one data stream per seed.

Item positions are handed out by the global batch index, so the batch a run
trains on at step ``k`` is the same whether the run started there, resumed
there, uses 0 or 8 loader workers; under DDP each rank takes its own interleaved
part of the stream.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch.utils.data import DistributedSampler


class StreamSampler(DistributedSampler):
    """Positions ``(k * world + rank) * batch_size + j`` for global batches ``k``.

    It subclasses ``DistributedSampler`` only so that Lightning, under DDP, keeps
    it instead of wrapping it in a sampler of its own: the split by rank is
    already done here.

    Args:
        items_per_epoch: items of one epoch over all ranks (``len(dataset)``).
        batch_size: items per batch and rank.
        rank: this process's rank.
        world: number of ranks.
        start: returns the global batch index the next epoch starts at (the
            Trainer's step after a resume); None continues where the previous
            iteration stopped.
    """

    def __init__(
        self,
        items_per_epoch: int,
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        start: Callable[[], int | None] | None = None,
    ):
        # DistributedSampler.__init__ needs a dataset and a process group: neither is used.
        self.batch_size, self.rank, self.num_replicas = batch_size, rank, world
        self.batches = max(1, items_per_epoch // (batch_size * world))
        self.epoch = 0
        self._start = start or (lambda: None)
        self._next = 0

    def __len__(self) -> int:
        return self.batches * self.batch_size

    def set_epoch(self, epoch: int) -> None:
        # Positions come from the global batch index; the epoch number adds nothing.
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        first = self._start()
        first = self._next if first is None else first
        self._next = first + self.batches
        for k in range(first, first + self.batches):
            base = (k * self.num_replicas + self.rank) * self.batch_size
            yield from range(base, base + self.batch_size)
