"""Random-segment throughput of the cached DataModule datasets against musdb's own
random access (``track.chunk_start`` / ``chunk_duration``), on the compressed and
the wav form of the same real track, and cache building speed against real time.

The real MUSDB18 preview (6.8 s) is looped losslessly (``ffmpeg -stream_loop
-c copy``) into a longer stems file, so fixed ffmpeg start-up costs do not hide
the decoding speed; its wav form is written from musdb's own decoding.
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
            "0",
            "-c",
            "copy",
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


def _datamodule_segments_per_s(paths: list[Path], count: int, workers: int) -> float:
    from torch.utils.data import DataLoader

    from datamodules.datasets import CachedArrays, RandomSegments

    dataset = RandomSegments(
        CachedArrays(paths),
        SOURCES,
        int(SEGMENT_SECONDS * 44100),
        segments_per_track=count,
        remix=True,
    )
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, shuffle=True)
    iterator = iter(loader)
    next(iterator)  # worker start-up is a one-off cost, not per-segment throughput
    start = time.perf_counter()
    seen = sum(1 for _ in iterator)
    return seen / (time.perf_counter() - start)


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
            f"{SEGMENT_SECONDS:.0f} s stereo 4-stem segments, one worker"
        )
        print(
            f"{'form':6} {'musdb seg/s':>12} {'cached, in-process':>19} {'cached, 1 worker':>17}"
            f" {'cache build':>12}"
        )
        for form, root in roots.items():
            musdb_rate = _musdb_segments_per_s(root, form == "wav", musdb_count)
            paths, realtime = _cache_build(root, Path(tmp) / f"cache-{form}")
            cells = []
            for workers in (0, 1):
                ours = _datamodule_segments_per_s(paths, dm_count, workers)
                cells.append(f"{ours:7.0f} ({ours / musdb_rate:5.0f}x)")
            print(f"{form:6} {musdb_rate:12.2f} {cells[0]:>19} {cells[1]:>17} {realtime:8.1f}x RT")
    print("(x) = ratio to musdb's own access on the same form; RT = real time.")
    print("targets: cached >= 500x musdb's own access; cache building >= 20x real time.")
    print("A worker process hands each 4 MB segment over in fresh shared memory, so its rate is")
    print("bound by page faults of the machine (see `sys` time), not by the cache.")
