"""Writing and reading the suite's small files, one way everywhere.

Every file a run, an evaluation or the cache writes is written to a temporary
name beside it and renamed over the target, so a reader (or a run killed while
writing) sees the old file or the whole new one, never a truncated one. A
leftover temporary file is named ``.<name>.*.tmp``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write through ``write(binary file)`` into a temporary file, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        # mkstemp makes the file private (0600); a written file gets the usual mode
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text(path: str | Path, text: str) -> None:
    """Atomically write ``text`` (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def finite_or_none(value: Any) -> Any:
    """``value`` with every NaN or infinite float, at any depth, replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_none(v) for v in value]
    return value


def write_json(path: str | Path, data: Any) -> None:
    """Atomically write standard JSON (NaN and infinities as null), indented."""
    write_text(path, json.dumps(finite_or_none(data), indent=2, default=str, allow_nan=False))


def read_json(path: str | Path) -> dict:
    """A JSON object from ``path``; {} when the file is missing or not JSON."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
