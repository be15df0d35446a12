"""The offline runner: every cell of a grid sweep trained here, one after another or
one per GPU at a time (:func:`run_offline`), or one cell in this very process, as a
Slurm array task runs it (:func:`run_cell`)."""

from __future__ import annotations

import collections
import functools
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablation.children import die_with_parent, terminate_children_on_sigterm
from ablation.run_lock import IN_USE_EXIT_CODE, RunLock
from ablation.runs import SUMMARY, is_done
from ablation.sweep.config import (
    SweepError,
    cell_run_dir,
    check_count,
    dry_run,
    keep_sweep_copy,
    offline_cells,
    offline_command,
    offline_env,
)


def run_cell(
    path: str | Path,
    index: int,
    runs_dir: str | Path = "runs",
    extra_args: list[str] | None = None,
) -> int:
    """Train cell ``index`` of the offline expansion in this very process (a Slurm array
    task): the process becomes ``ablation fit``, so the signals Slurm sends before a
    time limit reach Lightning (and skips a cell finished earlier with the same
    arguments and data). Waits while another process trains the cell."""
    config, name, cells = offline_cells(path)
    if not 0 <= index < len(cells):
        raise SweepError(
            f"{path}: cell index {index} is out of range: the grid has {len(cells)} cells "
            f"(0 to {len(cells) - 1}). Submit an array of {len(cells)} tasks."
        )
    params = cells[index]
    run_dir = cell_run_dir(Path(runs_dir), name, params)
    label = f"[{index + 1}/{len(cells)}] {run_dir.name}"
    run_lock = RunLock(run_dir)
    if not run_lock.is_free():
        print(f"{label}: waiting for {run_lock.holder()}, which trains it", flush=True)
        run_lock.acquire(wait=True)
        run_lock.release()
    # a finished run is skipped by `ablation fit` itself, once it compared arguments and data
    cmd = offline_command(config, name, params, runs_dir, extra_args)
    print(f"{label}: {' '.join(cmd)}", flush=True)
    os.execvpe(cmd[0], cmd, offline_env())
    raise AssertionError("unreachable: exec returns only by raising")


@dataclass
class Outcome:
    finished: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _summary_stamp(run_dir: Path) -> tuple[int, int] | None:
    """The summary's modification time (ns) and size; None without a summary."""
    try:
        stat = (Path(run_dir) / SUMMARY).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def run_offline(
    path: str | Path,
    gpus: list[str] | None = None,
    count: int | None = None,
    runs_dir: str | Path = "runs",
    extra_args: list[str] | None = None,
) -> Outcome:
    """Run every cell of a grid sweep here, offline; see the module docstring.

    Args:
        path: the sweep YAML.
        gpus: GPU ids to spread cells over (one cell per GPU at a time); None: one
            cell at a time on whatever the config selects.
        count: run at most this many cells (in grid order).
        runs_dir: parent of the sweep's run folders.
        extra_args: appended to every run's command (e.g. ``--data.root=...``).

    Returns:
        Which runs finished, were skipped as done, or failed (a failure does not
        stop the other cells).

    A cell with a ``summary.json`` is skipped only once ``ablation fit`` found its
    arguments and data the recorded ones (else it fails, saying what changed). A cell
    another process trains (its run folder is locked, :mod:`ablation.run_lock`) is left
    for later while free cells remain, then waited for.
    """
    check_count(count)
    config, name, cells = offline_cells(path)
    cells = cells[:count]
    outcome, lock = Outcome(), threading.Lock()
    running: set[subprocess.Popen] = set()

    def cell_command(params: dict[str, Any]) -> list[str]:
        return offline_command(config, name, params, runs_dir, extra_args)

    env = offline_env()
    pending = [p for p in cells if not is_done(cell_run_dir(Path(runs_dir), name, p))]
    if pending:
        dry_run(path, cell_command(pending[0]), pending[0], env)
    keep_sweep_copy(path, runs_dir)  # once the grid is known to run
    todo = collections.deque(enumerate(cells))
    deferred: collections.deque = collections.deque()  # cells another process trains

    def train(index: int, params: dict[str, Any], gpu: str | None) -> str:
        """Run the cell's `ablation fit` (which also decides whether a finished run may be
        skipped); returns finished, skipped, failed or in use."""
        run_dir = cell_run_dir(Path(runs_dir), name, params)
        label = f"[{index + 1}/{len(cells)}] {run_dir.name}"
        before = _summary_stamp(run_dir)
        try:
            cmd = cell_command(params)
            cell_env = dict(env)
            if gpu is not None:
                cell_env["CUDA_VISIBLE_DEVICES"] = str(gpu)
            if before is not None:
                print(f"{label}: summary.json present: checking its arguments and data", flush=True)
            else:
                print(f"{label}: {' '.join(cmd)}", flush=True)
            started_ns = time.time_ns()
            # This thread waits for the child, so it outlives it, as die_with_parent needs.
            child = subprocess.Popen(
                cmd, env=cell_env, preexec_fn=functools.partial(die_with_parent, os.getpid())
            )
            with lock:
                running.add(child)
            code = child.wait()
            with lock:
                running.discard(child)
        except OSError as err:  # the command could not start: a failed cell, not a lost one
            print(f"{label}: FAILED to start ({err})", flush=True)
            return "failed"
        if code == IN_USE_EXIT_CODE:
            return "in use"
        after = _summary_stamp(run_dir)
        # unchanged, or written before the child started (by another process, while we waited)
        kept = after == before if before is not None else after and after[0] < started_ns
        if code == 0 and after is not None and kept:
            print(f"{label}: done earlier, skipped", flush=True)
            return "skipped"
        ok = code == 0 and is_done(run_dir)
        print(f"{label}: {'finished' if ok else f'FAILED (exit code {code})'}", flush=True)
        return "finished" if ok else "failed"

    def worker(gpu: str | None) -> None:
        while True:
            with lock:
                if not todo and not deferred:
                    return
                wait = not todo  # every cell left is another process's: wait for them
                index, params = todo.popleft() if todo else deferred.popleft()
            run_dir = cell_run_dir(Path(runs_dir), name, params)
            label = f"[{index + 1}/{len(cells)}] {run_dir.name}"
            run_lock = RunLock(run_dir)
            if wait:
                print(f"{label}: waiting for {run_lock.holder()}, which trains it", flush=True)
                run_lock.acquire(wait=True)
                run_lock.release()
            elif not run_lock.is_free():
                print(
                    f"{label}: {run_lock.holder()} trains it now: taking the next free cell, "
                    "back to this one later",
                    flush=True,
                )
                with lock:
                    deferred.append((index, params))
                continue
            result = train(index, params, gpu)
            with lock:
                if result == "in use":  # another process took it between our look and its start
                    print(f"{label}: taken by another process: back to it later", flush=True)
                    deferred.append((index, params))
                else:
                    getattr(outcome, result).append(run_dir.name)

    # daemons: one waiting for another process's lock must not keep an interrupted runner
    threads = [threading.Thread(target=worker, args=(gpu,), daemon=True) for gpu in gpus or [None]]
    with terminate_children_on_sigterm(lambda: list(running)):
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    print(
        f"\nsweep {name}: {len(outcome.finished)} finished, {len(outcome.skipped)} skipped "
        f"(done earlier), {len(outcome.failed)} failed {outcome.failed or ''}"
    )
    print(
        f"sync the offline W&B runs later with: wandb sync {runs_dir}/{name}/*/wandb/offline-run-*"
    )
    return outcome
