"""The per-process TTL cache's loads (realtime/store/cache.py): one load per key however many
callers miss at once, errors to every waiting caller, a cancelled caller cancels nobody else's."""

from __future__ import annotations

import asyncio

import pytest

from realtime.store.cache import TTLCache


class Loader:
    def __init__(self) -> None:
        self.calls = 0
        self.release = asyncio.Event()
        self.error: Exception | None = None

    async def __call__(self) -> str:
        self.calls += 1
        await self.release.wait()
        if self.error is not None:
            raise self.error
        return f"value-{self.calls}"


async def test_callers_that_miss_together_share_one_load_and_its_value_is_kept():
    cache: TTLCache[str] = TTLCache()
    load = Loader()
    callers = [asyncio.create_task(cache.get_or_load("k", load, ttl=60)) for _ in range(20)]
    await asyncio.sleep(0)
    load.release.set()
    assert await asyncio.gather(*callers) == ["value-1"] * 20
    assert load.calls == 1
    assert cache.get("k") == (True, "value-1")
    assert await cache.get_or_load("k", load, ttl=60) == "value-1"
    assert load.calls == 1


async def test_a_failed_load_reaches_every_waiting_caller_and_is_not_kept():
    cache: TTLCache[str] = TTLCache()
    load = Loader()
    load.error = RuntimeError("database down")
    callers = [asyncio.create_task(cache.get_or_load("k", load, ttl=60)) for _ in range(3)]
    await asyncio.sleep(0)
    load.release.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert [str(r) for r in results] == ["database down"] * 3
    assert (load.calls, cache.get("k")) == (1, (False, None))


async def test_a_cancelled_caller_leaves_the_load_to_the_others():
    cache: TTLCache[str] = TTLCache()
    load = Loader()
    first = asyncio.create_task(cache.get_or_load("k", load, ttl=60))
    second = asyncio.create_task(cache.get_or_load("k", load, ttl=60))
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    load.release.set()
    assert (await second, load.calls) == ("value-1", 1)


async def test_without_a_ttl_every_miss_loads_again():
    cache: TTLCache[str] = TTLCache()
    load = Loader()
    load.release.set()
    assert [await cache.get_or_load("k", load, ttl=0) for _ in range(2)] == ["value-1", "value-2"]
