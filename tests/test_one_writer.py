"""Issue 21, item 3: one writer per run. A run folder is locked while a process trains in
it; a killed holder leaves no stuck lock; two sweeps on one grid share its cells."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from test_resume_and_errors import fit_args, fit_env  # noqa: F401 (a fixture)
from test_sweep import REPO, sweep_env, tiny_sweep  # noqa: F401 (a fixture)

from ablation.cli import main

# Another process that takes the run folder's lock as `ablation fit` does, then sleeps.
HOLDER = textwrap.dedent(
    """
    import fcntl, os, sys, time
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.lockf(fd, fcntl.LOCK_EX)
    os.write(fd, b"%d elsewhere\\n" % os.getpid())
    print("held", flush=True)
    time.sleep(600)
    """
)


def hold_lock(run: Path) -> subprocess.Popen:
    run.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run / ".run.lock")], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_fit_in_a_run_folder_in_use_refuses_in_one_line(fit_env, tmp_path, capsys):  # noqa: F811
    holder = hold_lock(tmp_path / "runs" / "adhoc" / "run")
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(fit_args(tmp_path, fit_env))
    finally:
        holder.kill()
        holder.wait()
    assert exit_info.value.code == 75  # the sweep runner's cue to take another cell
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("error: ") and f"pid {holder.pid} on elsewhere trains in it" in error
    assert not (tmp_path / "runs" / "adhoc" / "run" / "config.yaml").exists()


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    from ablation.run_lock import RunLock

    holder = hold_lock(tmp_path / "run")
    assert not RunLock(tmp_path / "run").is_free()
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = RunLock(tmp_path / "run")
    assert lock.acquire() and f"pid {os.getpid()}" in lock.holder()
    lock.release()


def fields_per_row(path: Path) -> set[int]:
    with path.open(newline="") as f:
        return {len(row) for row in csv.reader(f)}


@pytest.mark.slow
def test_two_sweeps_on_one_grid_train_each_cell_once(sweep_env, tmp_path):  # noqa: F811
    """The issue's race: two `ablation sweep` processes on one sweep and runs folder. On
    main both trained both cells in the same folders at once (two W&B runs in one folder,
    a metrics.csv whose rows do not match its header)."""
    path = tiny_sweep(tmp_path, ["1d-depth2", "2d-depth2"])
    runs = tmp_path / "runs"
    argv = [sys.executable, "-m", "ablation", "sweep", str(path), "--offline",
            f"--runs-dir={runs}", f"--root={sweep_env}"]  # fmt: skip
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    sweeps = []
    for log in logs:
        with log.open("w") as out:
            sweeps.append(subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT))
        time.sleep(0.5)
    codes = [p.wait(timeout=600) for p in sweeps]
    text = [log.read_text() for log in logs]
    assert codes == [0, 0], text
    said = "".join(text)
    assert "taking the next free cell" in said or "back to it later" in said, said
    for name in ("1d-depth2-filters4-seed0", "2d-depth2-filters4-seed0"):
        run = runs / "tiny" / name
        assert len(list((run / "wandb").glob("offline-run-*"))) == 1  # trained by one process
        assert len(fields_per_row(run / "metrics.csv")) == 1  # every row fits the header
        assert (run / "summary.json").exists()
    # each cell finished in one sweep and was skipped (or waited for) in the other
    finished = sum(t.count(": finished\n") for t in text)
    assert finished == 2, said
