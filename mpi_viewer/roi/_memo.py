"""Bounded memo dictionaries for the ROI fits, safe to share between worker threads.

A measured PSF keeps the fits made with it (every click measures the same seeds again);
the GUI measures in worker threads, so a look-up, an insertion and an eviction never
interleave. The value is computed outside the lock (two threads may compute the same
fit once each; both get equal values).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, MutableMapping
from typing import Any

_LOCK = threading.Lock()
_MISSING = object()


def remembered(cache: MutableMapping, key: Hashable, make: Callable[[], Any], limit: int) -> Any:
    """``cache[key]``, made by ``make()`` when absent; the oldest entries go beyond ``limit``."""
    with _LOCK:
        hit = cache.get(key, _MISSING)
    if hit is not _MISSING:
        return hit
    value = make()
    with _LOCK:
        while len(cache) >= limit:
            cache.pop(next(iter(cache)))
        cache[key] = value
    return value


def owned(owner: object, name: str) -> dict:
    """The memo dictionary ``name`` kept in ``owner``'s ``__dict__`` (made once)."""
    with _LOCK:
        return owner.__dict__.setdefault(name, {})
