"""Random-segment throughput of the cached DataModule datasets against musdb's own
random access (``track.chunk_start`` / ``chunk_duration``), on the compressed and
the wav form of the same real track, and cache building speed against real time.

The real MUSDB18 preview (6.8 s) is looped (``ffmpeg -stream_loop``, re-encoded
as AAC like MUSDB18) into a longer stems file, so fixed ffmpeg start-up costs do
not hide the decoding speed; its wav form is written from musdb's own decoding.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ablation.constants import SOURCES

SAMPLE = Path(__file__).resolve().parents[3] / "shared" / "data" / "musdb18-sample"
SEGMENT_SECONDS = 3.0
BATCH = 16  # the main grid's batch size


def _looped_dataset(out: Path, loops: int) -> dict[str, Path]:
    """Write ``out/stems`` (looped .stem.mp4) and ``out/wav`` (its HQ form)."""
    import musdb

    source = next((SAMPLE / "train").glob("*.stem.mp4"))
    stems_root = out / "stems"
    (stems_root / "train").mkdir(parents=True)
    looped = stems_root / "train" / source.name
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-stream_loop",
            str(loops - 1),
            "-i",
            str(source),
            "-map",
            "0:a",
            # Timestamps counted from the samples, re-encoded: copied packets keep each
            # loop's trimmed priming in the container's duration, which then promises
            # more than decodes (the decoder's truncation check refuses such a file).
            "-af",
            "asetpts=N/SR/TB",
            "-c:a",
            "aac",
            "-b:a",
            "256k",
            str(looped),
        ],
        check=True,
    )
    track = musdb.DB(root=str(stems_root), subsets="train").tracks[0]
    folder = out / "wav" / "train" / track.name
    folder.mkdir(parents=True)
    for name in ("mixture", *SOURCES):
        audio = track.audio if name == "mixture" else track.sources[name].audio
        sf.write(folder / f"{name}.wav", audio, track.rate, subtype="PCM_16")
    return {"stems": stems_root, "wav": out / "wav"}


def _musdb_segments_per_s(root: Path, is_wav: bool, count: int) -> float:
    import musdb

    track = musdb.DB(root=str(root), subsets="train", is_wav=is_wav).tracks[0]
    rng = np.random.default_rng(0)
    track.chunk_duration = SEGMENT_SECONDS
    start = time.perf_counter()
    for _ in range(count):
        track.chunk_start = rng.uniform(0, track.duration - SEGMENT_SECONDS)
        stems = track.stems  # what a musdb-based loader reads: all stems of the chunk
        assert stems.shape[0] == 5
    return count / (time.perf_counter() - start)


def _cache_build(root: Path, cache_dir: Path):
    from ablation.tracks import list_tracks
    from datamodules.cache import TrackCache

    tracks = list_tracks(root, "train")
    cache = TrackCache(cache_dir, root, 44100, 2)
    start = time.perf_counter()
    paths = cache.ensure(tracks, progress=False)
    seconds = time.perf_counter() - start
    duration = sum(np.load(p, mmap_mode="r").shape[-1] for p in paths.values()) / 44100
    return list(paths.values()), duration / seconds


def _datamodule(root: Path, cache_dir: Path, count: int, **options):
    from datamodules.musdb import MUSDBDataModule

    dm = MUSDBDataModule(
        root=str(root), cache_dir=str(cache_dir), segment=SEGMENT_SECONDS, context=0.0,
        segments_per_track=count, val_fraction=0.0, batch_size=BATCH, progress=False,
        pin_memory=False, **options,
    )  # fmt: skip
    dm.setup("fit")
    return dm


def _rate(batches, consume) -> float:
    """Segments per second of ``consume(batch)`` over ``batches``, the first one (worker
    start-up, a one-off cost) not counted."""
    iterator = iter(batches)
    consume(next(iterator))
    start, seen = time.perf_counter(), 0
    for batch in iterator:
        seen += consume(batch)
    return seen / (time.perf_counter() - start)


def _float_worker_rate(dm) -> float:
    """Before: float32 targets in fresh shared memory per batch, one worker."""
    from torch.utils.data import DataLoader

    from datamodules.datasets import collate_prebuilt

    loader = DataLoader(
        dm.train_set, batch_size=BATCH, sampler=dm.train_sampler(), num_workers=1,
        collate_fn=collate_prebuilt,
    )  # fmt: skip
    host_to_device = {}

    def consume(batch) -> int:
        stems = batch[0]
        host_to_device.setdefault(0, torch.empty_like(stems)).copy_(stems)
        return stems.shape[0]

    return _rate(loader, consume)


def _ring_worker_rate(dm) -> float:
    """After: compact raw stems in a ring of shared slots, one worker."""
    loader = dm.train_dataloader()
    host_to_device = {}

    def consume(batch) -> int:
        ref, positions = batch
        raw = dm._ring.data[ref.slot]
        host_to_device.setdefault(0, torch.empty_like(raw)).copy_(raw)
        dm._ring.check(ref)
        return len(positions)

    return _rate(loader, consume)


def _resident_rate(dm) -> float:
    """Device-resident stems (here the device is the CPU): cut and decoded per batch."""
    loader = dm.train_dataloader()
    assert dm._resident is not None, "the resident stems did not fit in memory"
    return _rate(loader, lambda batch: dm._resident.batch(batch[1]).shape[0])


def main(quick: bool = False) -> None:
    if not SAMPLE.is_dir():
        print(f"skipped: the real MUSDB18 preview is not at {SAMPLE}")
        return
    torch.set_num_threads(1)
    loops, musdb_count, dm_count = (3, 3, 2000) if quick else (10, 10, 20000)
    with tempfile.TemporaryDirectory() as tmp:
        roots = _looped_dataset(Path(tmp), loops)
        print(
            f"track: the MUSDB18 preview looped {loops}x ({loops * 6.8:.0f} s), "
            f"{SEGMENT_SECONDS:.0f} s stereo 4-stem segments, batches of {BATCH}"
        )
        header = ("form", "musdb seg/s", "before: 1 worker", "after: 1 worker", "resident", "")
        print(f"{header[0]:6} {header[1]:>12} {header[2]:>17} {header[3]:>17} {header[4]:>17}"
              f" {'cache build':>12}")  # fmt: skip
        for form, root in roots.items():
            musdb_rate = _musdb_segments_per_s(root, form == "wav", musdb_count)
            cache_dir = Path(tmp) / f"cache-{form}"
            _, realtime = _cache_build(root, cache_dir)
            workers = _datamodule(root, cache_dir, dm_count, num_workers=1)
            resident = _datamodule(root, cache_dir, dm_count, num_workers=0, resident=True)
            rates = [_float_worker_rate(workers), _ring_worker_rate(workers)]
            rates.append(_resident_rate(resident))
            cells = [f"{ours:7.0f} ({ours / musdb_rate:5.0f}x)" for ours in rates]
            dtype = str(workers.compact_dtype()).removeprefix("torch.")
            print(f"{form:6} {musdb_rate:12.2f} {cells[0]:>17} {cells[1]:>17} {cells[2]:>17}"
                  f" {realtime:8.1f}x RT   (travels as {dtype})")  # fmt: skip
    print("(x) = ratio to musdb's own access on the same form; RT = real time.")
    print("before: float32 batches in fresh shared memory; after: raw stems (int16 when the")
    print("cache is exactly 16-bit) in shared slots allocated once; both copied once into a")
    print("reused buffer, as the host-to-device copy reads them. resident: stems held by the")
    print("device (here the CPU), each batch cut, summed and converted there, no workers.")
    print("targets: 1 worker >= 500x musdb's own access; cache building >= 20x real time.")
