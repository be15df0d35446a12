"""One writer per run: a process trains in a run folder only while it holds the folder's
lock, ``<run>/.run.lock``.

The lock is a POSIX record lock (``fcntl.lockf``) on that file: the kernel drops it when
the process ends however it ends (a ``kill -9`` or a lost node cannot leave it stuck),
forked data-loader workers do not inherit it, and it works across machines on the shared
filesystems clusters use (NFS through its lock manager, Lustre mounted with ``flock``).
The file itself stays; it only says who held the lock last (pid and host), for messages.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ablation.errors import AblationError

LOCK = ".run.lock"
# `ablation fit` exits with this code when another process holds its run's lock (the
# sweep runner then takes another cell), EX_TEMPFAIL of sysexits.h.
IN_USE_EXIT_CODE = 75


class RunInUseError(AblationError):
    """Another process trains in this run folder."""

    exit_code = IN_USE_EXIT_CODE


class RunLock:
    """The lock of one run folder; :meth:`acquire` it, :meth:`release` it (or let the
    process end)."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK
        self._fd: int | None = None

    def holder(self) -> str:
        """Who took the lock last, as ``pid N on HOST`` (for messages)."""
        try:
            text = self.path.read_text().split()
        except OSError:
            return "another process"
        return f"pid {text[0]} on {text[1]}" if len(text) == 2 else "another process"

    def acquire(self, wait: bool = False) -> bool:
        """Take the lock; False when another process holds it (``wait``: block until free)."""
        if self._fd is not None:
            return True
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def is_free(self) -> bool:
        """Whether no other process holds the lock now (taken and released at once)."""
        if not self.path.exists():  # no process has trained here: nothing to create
            return True
        if self.acquire():
            self.release()
            return True
        return False


def lock_run(run_dir: str | Path) -> RunLock:
    """Hold the run folder's lock for this process, or refuse in one line.

    Raises:
        RunInUseError: another process trains in ``run_dir``.
    """
    lock = RunLock(run_dir)
    if not lock.acquire():
        raise RunInUseError(
            f"{run_dir} is in use: {lock.holder()} trains in it now (its lock {lock.path} is "
            f"held). Wait for it to end, or give this run another --run.name or --run.dir."
        )
    return lock
