"""Scoring many tracks: in this process or in spawned worker processes, each with one
torch and one BLAS thread, so any number of workers writes the files of a serial run.
Workers die with the evaluator, even when it is killed (:mod:`ablation.children`)."""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tqdm.auto import tqdm

from ablation.children import die_with_parent, terminate_children_on_sigterm
from ablation.evaluation.plan import Plan
from ablation.evaluation.protocol import EvaluationError
from ablation.evaluation.scoring import score_track_file
from ablation.threads import limit_process_threads, limited_threads


def _init_worker(parent_pid: int) -> None:
    # An idle worker blocks on its task queue forever once the evaluator is killed.
    die_with_parent(parent_pid)
    # Every track is computed on one thread in any process, so a parallel run writes
    # exactly the files of a serial one; parallelism is across tracks.
    limit_process_threads(1)


# Peak resident memory of an evaluation worker: the imports, and per second of its track
# (stereo, 44.1 kHz: the decoded stems and mixture in float64, the estimates, BSS Eval's
# arrays). `ablation bench scale` measured 5.0 GiB for a worker whose longest track was
# 257 s (about 19 MB per second); a 10-minute MUSDB18 track takes about 12 GB.
WORKER_BASE_BYTES = 1.0e9
WORKER_BYTES_PER_SECOND = 20e6


def available_memory() -> int | None:
    """Bytes this process may still use: the smaller of the machine's available memory and
    what its cgroup (a Slurm job's ``--mem``, a container's limit) leaves; None if unknown."""
    found = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    cgroup = Path("/sys/fs/cgroup")
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            found.append(int(limit) - int((cgroup / "memory.current").read_text()))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def default_jobs(
    longest_seconds: float, cores: int | None = None, available: int | None = None
) -> int:
    """Worker processes when none are asked for: one per core, but no more than the
    available memory holds at a worker's peak on the longest track (at least one)."""
    cores = cores or os.cpu_count() or 1
    if available is None:
        return cores
    per_worker = WORKER_BASE_BYTES + WORKER_BYTES_PER_SECOND * longest_seconds
    return max(1, min(cores, int(available // per_worker)))


# Without a terminal (a log file, the demo's output piped) a line per tenth.
PROGRESS_LINES = 10


class TrackLines:
    """Progress of an evaluation in a log: a line per tenth of the tracks (a line per
    track up to ten), with what is evaluated and the time so far; tqdm's bar's interface."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.done, self.shown, self.name = total, desc, 0, 0, ""
        self.started = time.monotonic()

    def set_postfix_str(self, name: str) -> None:
        self.name = name

    def update(self) -> None:
        self.done += 1
        tenth = self.done * PROGRESS_LINES // self.total
        if tenth > self.shown or self.total <= PROGRESS_LINES:
            self.shown = tenth
            seconds = time.monotonic() - self.started
            print(f"{self.desc}: {self.done}/{self.total} tracks scored ({self.name}, "
                  f"{seconds:.0f} s)", file=sys.stderr, flush=True)  # fmt: skip

    def close(self) -> None:
        pass


def progress_bar(plan: Plan, total: int, progress: bool) -> tqdm | TrackLines:
    """A bar on a terminal, lines in a log, nothing when ``progress`` is False."""
    ckpt = Path(plan.ckpt) if plan.ckpt else None
    what = f"{ckpt.parent.parent.name}/{ckpt.name}" if ckpt else f"baseline {plan.baseline}"
    desc = f"evaluating {what} on {plan.subset}"
    if progress and not sys.stderr.isatty():
        return TrackLines(total, desc)
    return tqdm(total=total, desc=desc, unit="track", disable=not progress)


def run_tracks(plan: Plan, names: Sequence[str], jobs: int, progress: bool) -> list[str]:
    """Score ``names`` with ``jobs`` worker processes (in this process when 1).

    Returns:
        Messages of the tracks that failed; the others are written.
    """
    failures: list[str] = []
    bar = progress_bar(plan, len(names), progress)

    def done(name: str, result: dict | None, error: BaseException | None) -> None:
        if error is not None:
            failures.append(f"{name}: {type(error).__name__}: {error}")
        elif result["silent"]:
            warnings.warn(
                f"track {name!r}: the reference or estimate of {', '.join(result['silent'])} "
                f"is silent throughout, so BSS Eval is undefined for its scoring group; those "
                f"frames are NaN, left out of the medians and counted in summary.md.",
                stacklevel=2,
            )
        bar.set_postfix_str(name[:40])
        bar.update()

    if jobs == 1:
        with limited_threads(1):
            for name in names:
                try:
                    done(name, score_track_file(plan, name), None)
                except (EvaluationError, ValueError, RuntimeError, OSError) as error:
                    done(name, None, error)
    else:
        # spawn, not fork: CUDA and OpenMP state do not survive a fork.
        # The pool starts its workers from this thread, which outlives them (die_with_parent).
        context = multiprocessing.get_context("spawn")
        with (
            ProcessPoolExecutor(jobs, context, _init_worker, (os.getpid(),)) as pool,
            terminate_children_on_sigterm(multiprocessing.active_children),
        ):
            futures = {pool.submit(score_track_file, plan, n): n for n in names}
            for future in as_completed(futures):
                error = future.exception()
                done(futures[future], None if error else future.result(), error)
    bar.close()
    return failures
