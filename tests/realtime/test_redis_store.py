"""The Sentinel-following pool of :mod:`realtime.store.redis`, without Sentinel.

Needs Redis: ``REDIS_URL`` (the suite's Redis pass), else skipped. The Sentinels are played by an
object that names a master; the same server under two names (``127.0.0.1`` and ``localhost``)
plays the old master and the new one, since the pool tells servers apart by address.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from redis.asyncio import Redis

from realtime.store import redis as redis_store

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")


class Sentinels:
    """What the pool asks of redis-py's ``Sentinel``: where the master is."""

    def __init__(self, master: tuple[str, int]) -> None:
        self.master = master

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        return self.master


async def connected_in_use(pool: Any) -> None:
    """Until a connection of ``pool`` is connected and in use (the read has reached Redis)."""
    async with asyncio.timeout(2):
        while not any(c.is_connected for c in pool._in_use_connections):  # noqa: ASYNC110 - redis-py's state
            await asyncio.sleep(0.01)


@pytest.fixture
def server() -> tuple[int, int]:
    """The port and db of the suite's Redis."""
    url = urlsplit(os.environ["REDIS_URL"])
    return url.port or 6379, int(url.path.strip("/") or 0)


@pytest.fixture
async def client(server: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    port, db = server
    monkeypatch.setattr(redis_store, "MASTER_CHECK_INTERVAL", 0.0)  # ask on every command
    following, _ = redis_store._async_pool_classes()
    pool = following("main", Sentinels(("127.0.0.1", port)), db=db)
    client = Redis(connection_pool=pool)
    yield client
    await client.aclose()
    await pool.aclose()  # a pool passed in is the caller's to close


async def test_a_read_under_way_on_the_old_master_runs_its_course_then_the_pool_leaves_it(
    client: Any, server: tuple[int, int]
) -> None:
    # Why a process's layer reads the old master for up to 5 s after the Sentinels name a new
    # one, during which its /readyz ping (sent to the new one) is not read (docs/DEPLOYMENT.md,
    # "Redis Sentinel": the read drains what the processes yet to move still write there).
    pool = client.connection_pool
    # Blocked like channels_redis's receive loop (BZPOPMIN, 5 s there), on a key nobody writes.
    blocked = asyncio.ensure_future(client.bzpopmin(f"test-{uuid.uuid4().hex}", timeout=1))
    await connected_in_use(pool)
    [old] = pool._in_use_connections
    assert (old.host, old.port) == ("127.0.0.1", server[0])

    pool.sentinel_manager.master = ("localhost", server[0])
    assert await client.ping() is True  # the pool asks, and hears of the new master

    assert not blocked.done()
    assert await asyncio.wait_for(blocked, 3.0) is None  # the read ran its course: nothing came
    # Closed when it came back to the pool: every connection now open is to the new master.
    assert await client.ping() is True
    assert {(c.host, c.port) for c in pool._available_connections if c.is_connected} == {
        ("localhost", server[0])
    }
