"""Killing a parent leaves no child behind: the sweep runner's fit run and the
evaluator's worker processes die with it, even when it dies by SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_sweep import REPO, tiny_sweep

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads the process tree from /proc (Linux)"
)


def stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, start time) of a process from /proc, or None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces
    return fields[0], int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
    """Every process below ``pid``: pid -> start time (which tells a reused pid apart)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (info := stat(int(entry.name))) is not None:
            parents.setdefault(info[1], []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if (info := stat(child)) is not None:
                found[child] = info[2]
                todo.append(child)
    return found


def survivors(processes: dict[int, int]) -> list[str]:
    """The processes still running (a zombie has exited and holds nothing)."""
    alive = []
    for pid, started in processes.items():
        info = stat(pid)
        if info is not None and info[2] == started and info[0] != "Z":
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            alive.append(f"{pid}: {cmdline.decode(errors='replace')[:160]}")
    return alive


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def kill_and_check_no_orphans(parent: subprocess.Popen, children: dict[int, int]) -> None:
    parent.send_signal(signal.SIGKILL)  # no handler runs: only the kernel can warn them
    parent.wait()
    deadline = time.monotonic() + 30
    while (left := survivors(children)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in [int(line.split(":")[0]) for line in left]:
        os.kill(pid, signal.SIGKILL)  # leave the machine clean before failing
    assert not left, f"orphans of a killed {parent.args[3]}: {left}"


def start(argv: list[str], tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "WANDB_MODE": "offline", "ABLATION_CACHE": str(tmp_path / "cache")}
    return subprocess.Popen(
        [sys.executable, "-m", "ablation", *argv],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def test_killed_sweep_runner_leaves_no_fit_run(toy_root, tmp_path):
    sweep = tiny_sweep(tmp_path, ["1d-depth2"], budget="00:00:10:00")  # outlasts the test
    runs = tmp_path / "runs"
    runner = start(
        ["sweep", str(sweep), "--offline", f"--runs-dir={runs}", f"--root={toy_root}"], tmp_path
    )
    try:
        # config.yaml is written as training starts: the child is deep inside Lightning.
        wait_for(lambda: list(runs.glob("tiny/*/config.yaml")), 120, "the fit run to start")
        children = descendants(runner.pid)
        assert any(b"fit" in Path(f"/proc/{p}/cmdline").read_bytes() for p in children)
        kill_and_check_no_orphans(runner, children)
    finally:
        runner.kill()


def test_killed_evaluator_leaves_no_workers(tmp_path):
    from datamodules import make_toy_dataset

    root = make_toy_dataset(tmp_path / "toy", n_train=1, n_test=6, duration=6.0, progress=False)
    evaluator = start(
        [
            "eval",
            f"--root={root}",
            "--baseline=mixture",
            "--jobs=2",
            "--no-wandb",
            f"--out={tmp_path / 'eval'}",
        ],
        tmp_path,
    )
    try:
        # Workers import torch at start: wait until both exist, then kill the evaluator.
        def workers():
            found = descendants(evaluator.pid)
            spawned = [p for p in found if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
            return found if len(spawned) >= 2 else None

        children = wait_for(workers, 60, "two evaluation workers")
        kill_and_check_no_orphans(evaluator, children)
    finally:
        evaluator.kill()
