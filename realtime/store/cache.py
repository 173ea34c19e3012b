"""A tiny per-process cache with expiring entries, for lookups on the hot path.

Selectors cache rows with it (:mod:`realtime.store.selectors`), authorizers cache
their answers with it (:mod:`realtime.auth.custom`). It holds no lock:
every operation is one or two dict operations, which the GIL keeps whole.

:meth:`TTLCache.get_or_load` loads a missing entry once however many callers
ask for it meanwhile: in a connect storm every handshake in flight presents the
same API key, and when its entry expires they would otherwise each send the
same query to the database (and queue for its one thread).
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable
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
        # Loads under way, by key (get_or_load).
        self._loading: dict[str, asyncio.Task[V]] = {}

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

    async def get_or_load(self, key: str, load: Callable[[], Awaitable[V]], ttl: float) -> V:
        """The live entry for ``key``, or what ``load()`` returns, kept for ``ttl`` seconds.

        Callers that miss while a load of the same key is under way wait for it
        instead of loading again. The load runs in a task of its own, so a caller
        that is cancelled (a client gone mid-handshake) does not cancel it for the
        others; its exception reaches every caller that waits for it.
        """
        hit, value = self.get(key)
        if hit:
            return value  # type: ignore[return-value]  # a hit carries a V
        loop = asyncio.get_running_loop()
        task = self._loading.get(key)
        if task is None or task.get_loop() is not loop:
            task = loop.create_task(self._load(key, load, ttl))
            self._loading[key] = task
            task.add_done_callback(functools.partial(self._loaded, key))
        return await asyncio.shield(task)

    async def _load(self, key: str, load: Callable[[], Awaitable[V]], ttl: float) -> V:
        value = await load()
        self.set(key, value, ttl)
        return value

    def _loaded(self, key: str, task: asyncio.Task[V]) -> None:
        if self._loading.get(key) is task:
            del self._loading[key]
        if not task.cancelled():
            # Retrieved here: when every caller was cancelled, nobody else reads it.
            task.exception()

    def clear(self) -> None:
        """Forget every entry (a load under way still stores what it loads)."""
        self._entries.clear()
        self._loading.clear()

    def __len__(self) -> int:
        """Entries held, expired ones included until they are overwritten or cleared."""
        return len(self._entries)
