"""Thread limits for CPU work that is fastest on one core: BSS Eval and evaluation workers.

On a busy machine (other processes on every core), a parallel region waits for
its descheduled threads, and the many small parallel regions of BSS Eval then
run several times slower than on one thread; on an idle machine they gain
little. Limiting torch's intra-op threads and the BLAS / OpenMP pools that
numpy and scipy load is the fast default, and parallelism goes across tracks.
"""

from __future__ import annotations

import functools
import numbers
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from threadpoolctl import ThreadpoolController

from ablation.errors import AblationError

__all__ = ["limit_process_threads", "limited_threads"]


@contextmanager
def limited_threads(threads: int | None) -> Iterator[None]:
    """Compute with at most ``threads`` torch and BLAS / OpenMP threads, then restore.

    Args:
        threads: the limit; ``None`` leaves every pool as it is.
    """
    if threads is None:
        yield
        return
    if not (isinstance(threads, numbers.Integral) and threads >= 1):
        raise AblationError(
            f"threads must be a positive whole number or None, got {threads!r}; "
            "pass threads=1 (the fast default) or None to keep torch's setting."
        )
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with _blas_limit(threads):
            yield
    finally:
        torch.set_num_threads(before)


def limit_process_threads(threads: int) -> None:
    """At most ``threads`` torch and BLAS / OpenMP threads for the rest of this process
    (a worker's: nothing to restore)."""
    torch.set_num_threads(threads)
    _blas_limit(threads)


def _blas_limit(threads: int) -> Any:
    return _controller(len(sys.modules)).limit(limits=threads)


@functools.lru_cache(maxsize=1)
def _controller(modules: int) -> ThreadpoolController:
    # Inspecting the loaded libraries takes milliseconds; a cached controller limits
    # them in microseconds. A BLAS or OpenMP pool arrives with an extension module
    # (scipy.linalg, a second torch library ...), so a controller made before an import
    # would miss its pool: it is made again whenever more modules are loaded.
    return ThreadpoolController()
