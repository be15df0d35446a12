"""A loaded machine for benchmarks: one busy-looping process per core.

Speed on a machine other work keeps busy is what a researcher on a shared
server (or a benchmark beside other jobs) gets; the busy loops reproduce it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from ablation.children import die_with_parent


@contextmanager
def busy_cores(count: int | None = None) -> Iterator[int]:
    """Keep ``count`` cores (all of them when ``None``) busy while inside.

    Yields:
        The number of busy-loop processes.
    """
    count = os.cpu_count() or 1 if count is None else count
    loops = [
        subprocess.Popen(
            [sys.executable, "-c", "while True: pass"],
            preexec_fn=functools.partial(die_with_parent, os.getpid()),
        )
        for _ in range(count)
    ]
    try:
        yield count
    finally:
        for loop in loops:
            loop.kill()
        for loop in loops:
            loop.wait()
