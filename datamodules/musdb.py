"""The one DataModule every model of the suite trains on (DESIGN.md, fairness rule)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import DataLoader

from ablation.constants import SAMPLE_RATE
from ablation.tracks import DataError, TrackRef, dataset_stems, list_tracks, split_train_valid
from datamodules.augment import Augment, ChannelSwap, RandomGain, SignFlip
from datamodules.cache import TrackCache, default_cache_dir
from datamodules.compact import RingSegments, RingSlot, SlotRing, compact_dtype
from datamodules.datasets import (
    CachedArrays,
    FixedSegments,
    RandomSegments,
    WholeTracks,
    check_target_set,
    collate_prebuilt,
    resolve_targets,
)
from datamodules.resident import (
    RESIDENT,
    ResidentPositions,
    ResidentStems,
    fits,
)
from datamodules.sampler import StreamSampler

log = logging.getLogger(__name__)

DEFAULT_TOY_ROOT = "data/toy"
# A training batch (four float32 stems) larger than this is refused before it is allocated.
MAX_BATCH_BYTES = 64 * 2**30


class MUSDBDataModule(L.LightningDataModule):
    """MUSDB18 (compressed stems) or MUSDB18-HQ (wav) as stems ``(batch, sources,
    channels, time)``, decoded once into a memory-mapped cache.

    Train and validation come from the train subset (musdb's official split, or a
    seeded split for other data); test from the test subset, whole tracks.
    Training and validation items are windows: a loss region of ``segment``
    seconds with ``context`` seconds of real audio of the same track on each side
    (zeros only where a track starts or ends); each net reads the context it
    needs and is scored on the loss region. What training item ``k`` holds,
    augmentation included, is a function of ``seed`` and ``k`` alone.
    Augmentation runs on the device, in training only, before the mixture is formed.
    Training batches leave the loader as raw stems (int16 when the cache is exactly
    16-bit) in shared slots allocated once (:mod:`datamodules.compact`), or are cut
    on the device from resident stems (:mod:`datamodules.resident`); either way
    :meth:`on_after_batch_transfer` forms the same float32 bytes.

    Args:
        root: dataset root with ``train/`` and ``test/``. ``None`` uses
            ``$MUSDB_PATH`` (musdb's own variable) when set, else the toy dataset in
            ``data/toy``, generated on first use.
        is_wav: True for the HQ wav layout, False for ``.stem.mp4``; detected when None.
        targets: ``"4stems"``, ``"2stems"``, ``"all"`` (every stem of the dataset) or a list
            of the dataset's stem names (read from its files; MUSDB18's are drums, bass,
            other, vocals).
        sample_rate: rate the nets see (resampled once, into the cache).
        channels: 1 (mono) or 2 (stereo).
        segment: length of the loss region of a training or validation item, in seconds.
        context: real audio around the loss region on each side, in seconds; one
            setting for every cell of a sweep. None: set by the CLI to what the
            net needs (:meth:`set_context_samples`).
        segments_per_track: random training segments per track and epoch.
        remix: draw each stem from a random track and offset.
        val_segments_per_track: fixed validation segments per track.
        val_fraction: share of tracks held out when the official split does not apply.
        split_seed: seed of that split (independent of the training seed).
        gain_min: lower bound of the random gain per source.
        gain_max: upper bound of the random gain per source.
        channel_swap: randomly swap left/right per source.
        sign_flip: randomly negate each source.
        seed: the data seed: training windows, remix and augmentation draws. None:
            the run's ``seed_everything`` (``ablation fit`` fills it in), else 0; so
            seed k of every cell trains on the same stream.
        batch_size: items per batch (test always uses 1 whole track).
        num_workers: DataLoader worker processes.
        resident: keep the training stems on the device (GPU memory; RAM on the
            CPU) and cut batches there, with no workers; falls back to workers,
            saying so, when they do not fit. Same batches either way.
        pin_memory: pin host memory (only when CUDA is available).
        cache_dir: where decoded stems live; ``$ABLATION_CACHE`` or ``~/.cache``.
        progress: show a progress bar while building the cache.
    """

    def __init__(
        self,
        # Data
        root: str | None = None,
        is_wav: bool | None = None,
        targets: str | list[str] = "4stems",
        sample_rate: int = SAMPLE_RATE,
        channels: int = 2,
        # Items
        segment: float = 3.0,
        context: float | None = None,
        segments_per_track: int = 64,
        remix: bool = True,
        val_segments_per_track: int = 4,
        val_fraction: float = 0.15,
        split_seed: int = 42,
        # Augmentation
        gain_min: float = 0.25,
        gain_max: float = 1.25,
        channel_swap: bool = True,
        sign_flip: bool = True,
        seed: int | None = None,
        # Loading
        batch_size: int = 16,
        num_workers: int = 2,
        resident: bool = False,
        pin_memory: bool = True,
        cache_dir: str | None = None,
        progress: bool = True,
    ):
        super().__init__()
        self.save_hyperparameters()
        if channels not in (1, 2):
            raise DataError(f"channels must be 1 or 2, got {channels}: set --data.channels.")
        if segment <= 0:
            raise DataError(f"segment must be a positive number of seconds, got {segment}.")
        for name, value in (("sample_rate", sample_rate), ("batch_size", batch_size),
                            ("segments_per_track", segments_per_track),
                            ("val_segments_per_track", val_segments_per_track)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise DataError(
                    f"data.{name} must be a whole number of 1 or more, got {value!r}: set "
                    f"--data.{name} (e.g. --data.{name}=16), or leave it out for the default."
                )
        if context is not None and context < 0:
            raise DataError(
                f"context must be a number of seconds >= 0, got {context}: set --data.context."
            )
        self.root = Path(root or os.environ.get("MUSDB_PATH") or DEFAULT_TOY_ROOT)
        self._splits: dict[str, list[TrackRef]] = {}
        check_target_set(targets)  # a misspelt set name is named before the data is read
        self.sources = resolve_targets(targets, self.stems)
        self.segment_samples = round(segment * sample_rate)
        self.context_samples = round((context or 0.0) * sample_rate)
        self.read_context_samples: int | None = None
        self.last_positions: list[int] = []
        transforms = [RandomGain(gain_min, gain_max)]
        transforms += [ChannelSwap()] if channel_swap else []
        transforms += [SignFlip()] if sign_flip else []
        self.seed = 0 if seed is None else seed
        self.augment = Augment(transforms, seed=self.seed)
        self._arrays: dict[str, CachedArrays] = {}
        self._dtype: torch.dtype | None = None
        self._ring: SlotRing | None = None
        self._resident: ResidentStems | None = None

    # ---- discovery and cache ------------------------------------------------
    def _ensure_root(self) -> None:
        if self.root.resolve() == Path(DEFAULT_TOY_ROOT).resolve() and not self.root.exists():
            from datamodules.toy import make_toy_dataset

            log.warning("no dataset root given: generating the toy dataset in %s", self.root)
            make_toy_dataset(self.root)

    def splits(self) -> dict[str, list[TrackRef]]:
        """Tracks per split: ``train``, ``valid`` and ``test`` (empty when absent)."""
        if not self._splits:
            self._ensure_root()
            is_wav = self.hparams.is_wav
            train = list_tracks(self.root, "train", is_wav)
            fit, valid = split_train_valid(
                train, self.hparams.val_fraction, self.hparams.split_seed
            )
            if not valid:
                log.warning(
                    "no validation tracks in %s: validating on the training tracks", self.root
                )
                valid = fit
            test = list_tracks(self.root, "test", is_wav) if (self.root / "test").is_dir() else []
            self._splits = {"train": fit, "valid": valid, "test": test}
        return self._splits

    @property
    def stems(self) -> tuple[str, ...]:
        """The dataset's stem names, read from its files (the same in every track)."""
        return dataset_stems([t for split in self.splits().values() for t in split])

    @property
    def cache(self) -> TrackCache:
        if not hasattr(self, "_cache"):
            cache_dir = self.hparams.cache_dir or default_cache_dir()
            self._cache = TrackCache(
                cache_dir, self.root, self.hparams.sample_rate, self.hparams.channels, self.stems
            )
        return self._cache

    def prepare_data(self) -> None:
        """Decode every track once (rank 0 only; Lightning calls it before setup)."""
        tracks = [t for split in self.splits().values() for t in split]
        self.cache.ensure(tracks, progress=self.hparams.progress)

    def arrays(self, split: str) -> CachedArrays:
        """Memory maps of one split, building missing cache entries first."""
        if split not in self._arrays:
            tracks = self.splits()[split]
            if not tracks:
                raise DataError(
                    f"no {split} tracks under {self.root}: expected a {split} subset. "
                    f"Check --data.root."
                )
            paths = self.cache.ensure(tracks, progress=self.hparams.progress)
            self._arrays[split] = CachedArrays(list(paths.values()), self.stems)
            self._warn_short(split, tracks)
        return self._arrays[split]

    def _warn_short(self, split: str, tracks: Sequence[TrackRef]) -> None:
        lengths = self._arrays[split].lengths
        short = [t.name for t, n in zip(tracks, lengths, strict=True) if n < self.segment_samples]
        if short and split != "test":
            log.warning(
                "%d %s track(s) are shorter than one segment (%.2f s) and are zero-padded: %s",
                len(short),
                split,
                self.hparams.segment,
                short,
            )

    def read_at_most(self, samples: int) -> None:
        """Read only ``samples`` of the context on each side (before ``setup``): the part a
        net reads. Loss regions, and the real audio around them that the net sees, stay
        those of the full context; the loader just moves no audio the net would drop.

        Raises:
            DataError: a batch of such windows would not fit in any memory (a net far too
                deep for its data), refused before anything is allocated.
        """
        self.read_context_samples = min(self.context_samples, int(samples))
        window = self.segment_samples + 2 * self.read_context_samples
        batch_bytes = 4 * window * self.hparams.batch_size * self.hparams.channels * 4
        if batch_bytes > MAX_BATCH_BYTES:
            rate = self.hparams.sample_rate
            raise DataError(
                f"the net reads {self.read_context_samples / rate:.3g} s of context on each "
                f"side of a {self.hparams.segment} s segment: a batch of "
                f"{self.hparams.batch_size} windows would take {batch_bytes / 2**30:.3g} GiB, "
                f"expected at most {MAX_BATCH_BYTES / 2**30:.0f} GiB. Lower --model.depth (its "
                f"reach doubles with every level), or --data.batch_size."
            )

    @property
    def window_context_samples(self) -> int:
        """Context samples per side in the items the loaders build."""
        if self.read_context_samples is None:
            return self.context_samples
        return self.read_context_samples

    def set_context_samples(self, samples: int) -> None:
        """Set the context per side (before ``setup``), e.g. to what a net needs."""
        self.context_samples = int(samples)
        self.hparams.context = samples / self.hparams.sample_rate

    # ---- datasets -----------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if stage in ("fit", None):
            self.train_set = RandomSegments(
                self.arrays("train"),
                self.sources,
                self.segment_samples,
                self.hparams.segments_per_track,
                self.hparams.remix,
                context=self.window_context_samples,
                seed=self.seed,
                place_context=self.context_samples,
            )
        if stage in ("fit", "validate", None):
            self.val_set = FixedSegments(
                self.arrays("valid"),
                self.sources,
                self.segment_samples,
                self.hparams.val_segments_per_track,
                context=self.window_context_samples,
            )
        if stage in ("test", None):
            names = [t.name for t in self.splits()["test"]]
            self.test_set = WholeTracks(self.arrays("test"), self.sources, names)

    def _loader(self, dataset, batch_size: int, sampler=None) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=workers,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
            persistent_workers=workers > 0,
            collate_fn=collate_prebuilt if getattr(dataset, "__getitems__", None) else None,
        )

    def _stream_start(self) -> int | None:
        """Global batch index of the next training batch (None without a Trainer)."""
        trainer = self.trainer
        if trainer is None:
            return None
        return trainer.global_step * trainer.accumulate_grad_batches

    def train_sampler(self) -> StreamSampler:
        """This rank's part of the data stream."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer else (0, 1)
        return StreamSampler(
            len(self.train_set), self.hparams.batch_size, rank, world, start=self._stream_start
        )

    def train_dataloader(self) -> DataLoader:
        """Batches ``(source, positions)``: where the raw stems are (a loader slot or the
        device-resident stems); :meth:`on_after_batch_transfer` turns them into stems."""
        batch_size, sampler = self.hparams.batch_size, self.train_sampler()
        if self.hparams.resident and self._load_resident():
            positions = ResidentPositions(len(self.train_set))
            return DataLoader(
                positions, batch_size=batch_size, sampler=sampler, collate_fn=collate_prebuilt
            )
        return self._loader(self._ring_segments(sampler), batch_size, sampler)

    def compact_dtype(self) -> torch.dtype:
        """int16 when the training cache holds 16-bit audio exactly, else float32."""
        if self._dtype is None:
            paths = self.arrays("train").paths
            self._dtype = compact_dtype(paths, progress=self.hparams.progress)
        return self._dtype

    def _ring_segments(self, sampler: StreamSampler) -> RingSegments:
        # slots: batches a DataLoader keeps in flight, the one training, one fetched ahead
        in_flight = 2 * max(self.hparams.num_workers, 1)
        stems, channels = self.arrays("train")[0].shape[:2]
        shape = (self.hparams.batch_size, stems, channels, self.train_set.window)
        self._ring = SlotRing(in_flight + 4, shape, self.compact_dtype())
        return RingSegments(self.train_set, self._ring, world=sampler.num_replicas)

    def _device(self) -> torch.device:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _load_resident(self) -> bool:
        """Put the training stems on the device once; False (said) when they do not fit."""
        device, dtype = self._device(), self.compact_dtype()
        current = self._resident
        if current is not None and current.dataset is self.train_set and current.device == device:
            return True
        self._resident = None  # free the old copy before measuring free memory
        if not fits(self.train_set, dtype, device):
            return False
        self._resident = ResidentStems(self.train_set, dtype, device, self.hparams.progress)
        return True

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, 1)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        """Augment training stems on the device; validation and test stay untouched.

        A training batch arrives as ``(source, stream positions)``, ``source`` the
        stems or where their raw form is (:meth:`train_dataloader`), and leaves as
        the augmented stems; its positions stay in :attr:`last_positions` for the
        fairness record.
        """
        if isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[1], list):
            source, positions = batch
            self.last_positions = positions
            return self.augment(self._stems(source, positions), positions)
        return batch

    def _stems(self, source, positions: list[int]) -> torch.Tensor:
        """Float32 stems of a training batch from where its loader left them."""
        if isinstance(source, RingSlot):
            return self._ring.read(source, self.train_set.groups, self._device())
        if isinstance(source, str) and source == RESIDENT:
            return self._resident.batch(positions)
        return source
