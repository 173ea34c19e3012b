"""The channel layer's batch methods on a real Redis (realtime/delivery/layers.py), and the bridge
sending one message per process through them (realtime/delivery/bridge.py).

Each test's layers use a key prefix of their own in the shared Redis database; skipped without Redis.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

import pytest
import redis

from realtime.core import protocol
from realtime.core.paths import parse_channel
from realtime.delivery import bridge as bridge_module
from realtime.delivery.bridge import EVENTS_TYPE, LayerBridge
from realtime.delivery.hub import Hub, LocalSubscription
from realtime.delivery.layers import RedisChannelLayer
from realtime.delivery.outbox import Outbox

# Not the CI's database unless the CI names it (REDIS_URL): ad-hoc runs keep to their own.
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/11"


@pytest.fixture
def prefix() -> Any:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    name = f"rt-test-{uuid.uuid4().hex[:8]}"
    yield name
    for key in client.scan_iter(f"{name}*", count=1000):
        client.delete(key)
    client.close()


def new_layer(prefix: str, **config: Any) -> RedisChannelLayer:
    return RedisChannelLayer(hosts=[REDIS_URL], prefix=prefix, **config)


async def test_group_members_reads_every_group_at_once(prefix: str) -> None:
    layer = new_layer(prefix)
    a, b = await layer.new_channel("p."), await layer.new_channel("p.")
    await layer.group_add("g1", a)
    await layer.group_add("g1", b)
    await layer.group_add("g2", b)

    members = await layer.group_members(["g1", "g2", "nobody"])

    assert {group: sorted(channels) for group, channels in members.items()} == {
        "g1": sorted([a, b]),
        "g2": [b],
        "nobody": [],
    }
    await layer.flush()


async def test_send_many_gives_each_channel_its_message_in_the_order_sent(prefix: str) -> None:
    sender, reader_a, reader_b = new_layer(prefix), new_layer(prefix), new_layer(prefix)
    a, b = await reader_a.new_channel("p."), await reader_b.new_channel("p.")

    assert await sender.send_many({a: {"type": "t", "n": 1}, b: {"type": "t", "n": 2}}) == 0
    assert await sender.send_many({a: {"type": "t", "n": 3}}) == 0

    assert await asyncio.wait_for(reader_a.receive(a), 5) == {"type": "t", "n": 1}
    assert await asyncio.wait_for(reader_a.receive(a), 5) == {"type": "t", "n": 3}
    assert await asyncio.wait_for(reader_b.receive(b), 5) == {"type": "t", "n": 2}
    for layer in (sender, reader_a, reader_b):
        await layer.flush()


async def test_send_many_skips_a_full_channel_and_counts_it(prefix: str) -> None:
    sender, reader = new_layer(prefix, capacity=1), new_layer(prefix, capacity=1)
    channel = await reader.new_channel("p.")

    assert await sender.send_many({channel: {"type": "t", "n": 1}}) == 0
    assert await sender.send_many({channel: {"type": "t", "n": 2}}) == 1

    assert await asyncio.wait_for(reader.receive(channel), 5) == {"type": "t", "n": 1}
    client = redis.Redis.from_url(REDIS_URL)
    assert client.zcard(prefix + reader.non_local_name(channel)) == 0
    client.close()
    await sender.flush()


# -- the bridge: one message per process for a whole batch -------------------------------------


class Spy(RedisChannelLayer):
    """Counts the layer calls the bridge makes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[str] = []
        self.messages: list[Any] = []

    async def group_members(self, groups: Any) -> dict[str, list[str]]:
        self.calls.append("group_members")
        return await super().group_members(groups)

    async def send_many(self, messages: Any) -> int:
        self.calls.append(f"send_many×{len(messages)}")
        self.messages.append(dict(messages))
        return int(await super().send_many(messages))

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        self.calls.append("group_send")
        await super().group_send(group, message)


async def subscribed(bridge: LayerBridge, channel: str, arrived: asyncio.Event | None = None) -> list[str]:
    """A local subscriber of ``channel`` (id ``s``); the events it is sent (``arrived`` set at each)."""
    sent: list[str] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(json.loads(json.loads(message["text"])["event"]))
        if arrived is not None:
            arrived.set()

    outbox = Outbox(send, limit=1_000, on_overflow=lambda: None)
    outbox.start()
    subscription = LocalSubscription.create(outbox, "s", parse_channel(channel, allow_wildcard=True))
    await bridge.join(subscription.key)
    bridge.hub.add(subscription)
    return sent


async def test_a_batch_of_many_keys_is_one_message_per_other_process(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    publisher_layer, other_layer = (
        Spy(hosts=[REDIS_URL], prefix=prefix),
        Spy(hosts=[REDIS_URL], prefix=prefix),
    )
    monkeypatch.setattr(bridge_module, "get_channel_layer", lambda: publisher_layer)
    publisher = LayerBridge(Hub())
    await publisher.ready()
    monkeypatch.setattr(bridge_module, "get_channel_layer", lambda: other_layer)
    other = LayerBridge(Hub())
    await other.ready()
    here = await subscribed(publisher, "/default/p1")
    arrived = asyncio.Event()
    there = [await subscribed(other, f"/default/p{n}", arrived) for n in range(1, 4)]
    publisher_layer.calls.clear()

    sent = [
        publisher.fan_out_nowait(parse_channel(f"/default/p{n}", allow_wildcard=False), encoded(f"e{n}"))
        for n in range(1, 4)
    ]
    await asyncio.wait_for(asyncio.gather(*sent), timeout=5)

    # Members of the three groups, then one message: to the other process, none to itself.
    assert publisher_layer.calls == ["group_members", "send_many×1"]
    assert publisher_layer.messages == [
        {
            other._channel: {
                "type": EVENTS_TYPE,
                "batches": [[f"default/p{n}", encoded(f"e{n}")] for n in range(1, 4)],
                "origin": publisher._channel,
            }
        }
    ]
    receiving = asyncio.create_task(other._receive_loop())
    try:
        async with asyncio.timeout(5):
            while [len(events) for events in there] != [1, 1, 1]:
                await arrived.wait()
                arrived.clear()
    finally:
        receiving.cancel()
    assert here == ["e1"]
    assert there == [["e1"], ["e2"], ["e3"]]
    for layer in (publisher_layer, other_layer):
        await layer.flush()


def encoded(*values: Any) -> list[str]:
    return [protocol.encode_event(json.dumps(value)) for value in values]
