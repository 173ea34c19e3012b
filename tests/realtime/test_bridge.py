"""The layer bridge: what it sends through the channel layer, and when (realtime/delivery/bridge.py).

A recording layer stands in for channels_redis here; tests/e2e/test_multiprocess.py runs
two servers on a real Redis.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from realtime.core import protocol
from realtime.core.paths import parse_channel
from realtime.delivery.bridge import LAYER_BATCH_BYTES, LayerBridge, group_name_for
from realtime.delivery.hub import Hub, LocalSubscription
from realtime.delivery.outbox import Outbox
from realtime.exceptions import ServiceUnavailable
from tests.realtime.conftest import (
    UUID_PLACEHOLDER,
    assert_published,
    assert_sent,
    assert_silent,
    data,
    publish,
    receive_frames,
    subscribed,
    without_identifiers,
)


@pytest.fixture
async def bridge(layer):
    bridge = LayerBridge(Hub())
    await bridge.ready()
    return bridge


async def subscriber(bridge: LayerBridge, channel: str) -> list[dict]:
    """A connection subscribed to ``channel`` as ``s``; returns what it is sent."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    outbox = Outbox(send, limit=1_000, on_overflow=lambda: None)
    outbox.start()
    subscription = LocalSubscription.create(outbox, "s", parse_channel(channel, allow_wildcard=True))
    await bridge.join(subscription.key)
    bridge.hub.add(subscription)
    return sent


def events_of(sent: list[dict]) -> list[Any]:
    """The events of the data frames a subscriber was sent, decoded."""
    return [json.loads(json.loads(message["text"])["event"]) for message in sent]


def encoded(*values: Any) -> list[str]:
    """Events as the publish path hands them to the bridge: each event's JSON text as a JSON string."""
    return [protocol.encode_event(json.dumps(value)) for value in values]


def room() -> Any:
    return parse_channel("/default/room", allow_wildcard=False)


async def test_publishes_of_one_loop_pass_travel_in_one_layer_message_per_key_in_order(bridge, layer):
    exact, wildcard = await subscriber(bridge, "/default/room"), await subscriber(bridge, "/default/*")

    sent = [bridge.fan_out_nowait(room(), encoded(n)) for n in range(5)]
    await asyncio.wait_for(asyncio.gather(*sent), timeout=1)

    origin = "realtime.delivery.hub.hub!1"
    assert layer.sent == [
        (
            group_name_for(key),
            {"type": "realtime.event", "key": key, "events": encoded(0, 1, 2, 3, 4), "origin": origin},
        )
        for key in ("default/room", "default/*")
    ]
    await asyncio.sleep(0)
    assert events_of(exact) == events_of(wildcard) == [0, 1, 2, 3, 4]


async def test_local_subscribers_get_nothing_until_the_layer_has_the_events(bridge, layer):
    local = await subscriber(bridge, "/default/room")
    sent = bridge.fan_out_nowait(room(), encoded("x"))
    assert (local, layer.sent, sent.done()) == ([], [], False)
    await asyncio.wait_for(sent, timeout=1)
    await asyncio.sleep(0)
    assert events_of(local) == ["x"]


async def test_with_the_layer_down_every_publish_of_the_batch_fails_and_nobody_gets_anything(bridge, layer):
    local = await subscriber(bridge, "/default/room")
    layer.down = True
    sent = [bridge.fan_out_nowait(room(), encoded(n)) for n in range(3)]
    results = await asyncio.wait_for(asyncio.gather(*sent, return_exceptions=True), timeout=1)
    assert [type(result) for result in results] == [ServiceUnavailable] * 3
    await asyncio.sleep(0)
    assert (local, layer.sent) == ([], [])

    # The layer is back: the next publish goes through, and only it.
    layer.down = False
    await asyncio.wait_for(bridge.fan_out_nowait(room(), encoded("back")), timeout=1)
    await asyncio.sleep(0)
    assert events_of(local) == ["back"]
    assert [message["events"] for _, message in layer.sent] == [encoded("back")] * 2  # room, *


async def test_a_batch_larger_than_the_message_bound_is_split_and_keeps_its_order(bridge, layer):
    local = await subscriber(bridge, "/default/room")
    big = "x" * (LAYER_BATCH_BYTES // 3)
    sent = [bridge.fan_out_nowait(room(), encoded(f"{big}{n}")) for n in range(7)]
    await asyncio.wait_for(asyncio.gather(*sent), timeout=1)

    room_group = group_name_for("default/room")
    batches = [[json.loads(json.loads(e))[-1] for e in m["events"]] for g, m in layer.sent if g == room_group]
    assert batches == [["0", "1"], ["2", "3"], ["4", "5"], ["6"]]
    await asyncio.sleep(0)
    assert [event[-1] for event in events_of(local)] == list("0123456")


async def test_publishes_made_while_a_batch_is_in_flight_form_the_next_batch(bridge, layer):
    first = bridge.fan_out_nowait(room(), encoded("a"))
    for _ in range(2):  # the sender's own turn, then its batch is with the layer
        await asyncio.sleep(0)
    later = [bridge.fan_out_nowait(room(), encoded(c)) for c in "bc"]
    await asyncio.wait_for(asyncio.gather(first, *later), timeout=1)
    room_group = group_name_for("default/room")
    assert [m["events"] for g, m in layer.sent if g == room_group] == [encoded("a"), encoded("b", "c")]


# -- a WebSocket publisher through a distributed bridge----------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_pipelined_websocket_publishes_are_all_answered_and_delivered_in_order(layer, connect):
    listener, publisher = await connect(), await connect()
    await subscribed(listener, "s", "/default/room")
    for n in range(20):
        await publish(publisher, f"p{n}", "/default/room", [json.dumps(n)])

    answers = await receive_frames(publisher, 20)
    assert sorted((without_identifiers(frame) for frame in answers), key=lambda f: int(f["id"][1:])) == [
        {
            "type": "publish_success",
            "id": f"p{n}",
            "successful": [{"identifier": UUID_PLACEHOLDER, "index": 0}],
            "failed": [],
        }
        for n in range(20)
    ]
    assert await receive_frames(listener, 20) == [data("s", json.dumps(n)) for n in range(20)]
    await assert_silent(listener)
    # Fewer layer messages than publishes: frames read in one pass share one.
    assert len([g for g, _ in layer.sent if g == group_name_for("default/room")]) < 20


@pytest.mark.django_db(transaction=True)
async def test_a_websocket_publish_the_layer_refuses_is_a_publish_error_and_the_socket_stays(layer, connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")
    layer.down = True
    await publish(comm, "p1", "/default/room", ['"lost"'])
    await assert_sent(
        comm,
        {
            "type": "publish_error",
            "id": "p1",
            "errors": [
                {
                    "errorType": "ServiceUnavailable",
                    "message": "The service is temporarily unavailable, try again.",
                }
            ],
        },
    )
    await assert_silent(comm)
    layer.down = False
    await publish(comm, "p2", "/default/room", ['"kept"'])
    await assert_sent(comm, data("s", '"kept"'))
    await assert_published(comm, "p2", [0])
