"""What a process loads once and reuses for every track it scores: the net, the dataset."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

_CACHE: dict[Hashable, Any] = {}


def cached(key: Hashable, make: Callable[[], Any]) -> Any:
    """The value stored under ``key`` in this process, made by ``make()`` the first time."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def clear() -> None:
    """Forget everything: a serial run reuses this process for another evaluation."""
    _CACHE.clear()
