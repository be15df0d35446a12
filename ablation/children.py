"""Child processes that die with their parent (the sweep's fit runs, the evaluator's
workers): a killed parent must not leave a run training on its folder or idle workers
holding memory forever.

Two layers: on Linux the kernel sends each child SIGTERM when its parent dies, however
the parent died (``prctl(PR_SET_PDEATHSIG)``, which SIGKILL cannot bypass); everywhere,
a parent that receives SIGTERM terminates its children before it exits.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True).prctl
    except (OSError, AttributeError):  # no glibc-compatible libc: the SIGTERM layer remains
        return None


# Loaded once in the parent: a preexec_fn runs between fork and exec, where loading a
# library could deadlock on a lock some other thread held at the fork.
_PRCTL = _load_prctl()


def die_with_parent(parent_pid: int) -> None:
    """In a child: receive SIGTERM when the parent ``parent_pid`` dies (no-op off Linux).

    Usable as a ``preexec_fn`` (``functools.partial(die_with_parent, os.getpid())``) or
    as the first call of a worker initializer. The kernel tracks the parent *thread*
    that started the child, so start children from a thread that outlives them.
    """
    if _PRCTL is None:
        return
    _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    # The parent may have died between the fork and the request: then no signal comes.
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), signal.SIGTERM)


@contextmanager
def terminate_children_on_sigterm(children: Callable[[], Iterable[Any]]) -> Iterator[None]:
    """While inside, SIGTERM first terminates ``children()`` (objects with ``terminate()``:
    ``subprocess.Popen``, ``multiprocessing.Process``), then ends this process as the
    default action would. Only the main thread can install a handler; elsewhere the
    kernel layer of :func:`die_with_parent` alone applies."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        for child in list(children()):
            try:
                child.terminate()
            except (OSError, ValueError):  # exited meanwhile, or already closed
                pass
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)
