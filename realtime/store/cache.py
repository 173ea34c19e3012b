"""A tiny per-process cache with expiring entries, for lookups on the hot path.

Selectors cache rows with it (:mod:`realtime.store.selectors`), authorizers cache
their answers with it (:mod:`realtime.auth.custom`). It holds no lock:
every operation is one or two dict operations, which the GIL keeps whole.
"""

from __future__ import annotations

import time
from typing import Generic, TypeVar

V = TypeVar("V")


class TTLCache(Generic[V]):
    """Values by string key; each entry expires ``ttl`` seconds after it is set.

    Memory is bounded: when ``max_entries`` are held, setting one more first
    forgets them all (cheaper than tracking age, and a full cache is rare).
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: dict[str, tuple[float, V]] = {}
        self._max_entries = max_entries

    def get(self, key: str) -> tuple[bool, V | None]:
        """``(True, value)`` for a live entry, ``(False, None)`` for a missing or expired one."""
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return False, None
        return True, entry[1]

    def set(self, key: str, value: V, ttl: float) -> None:
        """Keep ``value`` for ``ttl`` seconds; a ``ttl`` of 0 or less keeps nothing."""
        if ttl <= 0:
            return
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + ttl, value)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()

    def __len__(self) -> int:
        """Entries held, expired ones included until they are overwritten or cleared."""
        return len(self._entries)
