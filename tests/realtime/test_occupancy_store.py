"""The Redis occupancy store: per-process counts and members, summed over live processes only.

Needs Redis: ``REDIS_URL`` (the suite's Redis pass), else skipped. Other processes are played by
writing their fields and liveness keys as a process would.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from realtime.presence.occupancy import RedisOccupancyStore

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis (REDIS_URL)")


class Layer:
    """What the store uses of channels_redis: a connection and the key prefix."""

    def __init__(self, client: Any, prefix: str) -> None:
        self.client = client
        self.prefix = prefix

    def connection(self, index: int) -> Any:
        return self.client


@pytest.fixture
async def store() -> AsyncIterator[RedisOccupancyStore]:
    client = aioredis.from_url(os.environ["REDIS_URL"])
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield RedisOccupancyStore(Layer(client, prefix))
    keys = [key async for key in client.scan_iter(f"{prefix}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


def other(store: RedisOccupancyStore) -> RedisOccupancyStore:
    """Another process's store: each process remembers the member fields it wrote."""
    return RedisOccupancyStore(store.layer)


async def test_counts_of_live_processes_are_summed_and_a_reader_leaves_out_its_own(store) -> None:
    await store.write("a", {"ns/room": (2, 1), "ns/*": (1, 1)}, ttl=10, members={})
    await other(store).write("b", {"ns/room": (3, 2)}, ttl=10, members={})

    assert await store.others("reader", ["ns/room", "ns/*", "ns/none"]) == {
        "ns/room": (5, 3),
        "ns/*": (1, 1),
        "ns/none": (0, 0),
    }
    assert await store.others("a", ["ns/room"]) == {"ns/room": (3, 2)}


async def test_a_process_whose_liveness_expired_stops_counting_and_its_fields_are_dropped(store) -> None:
    c1, c2 = '{"connection":"c1"}', '{"connection":"c2"}'
    await store.write("alive", {"ns/room": (1, 1)}, ttl=10, members={"ns/room": {"c1": c1}})
    await other(store).write("dead", {"ns/room": (4, 4)}, ttl=10, members={"ns/room": {"c2": c2}})
    redis = store.layer.connection(0)
    await redis.delete(f"{store.layer.prefix}:rt:alive:dead")  # what its TTL does once it stops refreshing

    assert await store.others("reader", ["ns/room"]) == {"ns/room": (1, 1)}
    assert await store.other_members("reader", "ns/room") == {"c1": c1}
    assert await redis.hkeys(f"{store.layer.prefix}:rt:occ:ns/room") == [b"alive"]
    assert await redis.hkeys(f"{store.layer.prefix}:rt:mem:ns/room") == [b"alive c1"]


async def test_members_a_process_no_longer_holds_are_deleted_and_zero_counts_removed(store) -> None:
    first = {"c1": '{"connection":"c1"}', "c2": '{"connection":"c2"}'}
    await store.write("p", {"ns/room": (2, 2)}, ttl=10, members={"ns/room": first})
    await store.write("p", {"ns/room": (0, 0)}, ttl=10, members={"ns/room": {}})

    assert await store.other_members("reader", "ns/room") == {}
    assert await store.others("reader", ["ns/room"]) == {"ns/room": (0, 0)}
