"""The layer bridge: what it sends through the channel layer, and when (realtime/delivery/bridge.py).

A recording layer stands in for channels_redis here; tests/e2e/test_multiprocess.py runs
two servers on a real Redis.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from channels.layers import BaseChannelLayer

from realtime.core import protocol
from realtime.core.paths import parse_channel
from realtime.delivery import bridge as bridge_module
from realtime.delivery.bridge import CONTROL_GROUP, LAYER_BATCH_BYTES, LayerBridge, group_name_for
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


# -- group membership -----------------------------------------------------------------------


# -- history streams: each key's epoch travels with its events (Hub.fence) -----------------------


def recorded_deliveries(hub: Hub, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, list[str], str | None]]:
    """What the bridge hands ``hub`` from now on: (key, events, epoch) per call."""
    delivered: list[tuple[str, list[str], str | None]] = []

    def deliver(key: str, events: list[str], epoch: str | None = None) -> int:
        delivered.append((key, events, epoch))
        return 0

    monkeypatch.setattr(hub, "deliver", deliver)
    return delivered


async def test_a_history_publish_sends_each_stream_epoch_with_its_events(bridge, layer, monkeypatch):
    delivered = recorded_deliveries(bridge.hub, monkeypatch)
    room_key, wild_key = "default/room", "default/*"

    first = bridge.fan_out_nowait(
        room(),
        ['"a"'],
        {room_key: ['"a","offset":7'], wild_key: ['"a","offset":9']},
        {room_key: "E", wild_key: "W"},
    )
    # The room's stream restarted between the two publishes of this batch: numbered from 1, epoch F.
    second = bridge.fan_out_nowait(
        room(),
        ['"b"'],
        {room_key: ['"b","offset":1'], wild_key: ['"b","offset":10']},
        {room_key: "F", wild_key: "W"},
    )
    await asyncio.wait_for(asyncio.gather(first, second), timeout=1)

    def message(key: str, events: list[str], epoch: str) -> tuple[str, dict[str, Any]]:
        body = {
            "type": "realtime.event",
            "key": key,
            "events": events,
            "origin": "realtime.delivery.hub.hub!1",
        }
        return group_name_for(key), {**body, "epoch": epoch}

    assert layer.sent == [
        message(room_key, ['"a","offset":7'], "E"),
        message(wild_key, ['"a","offset":9', '"b","offset":10'], "W"),
        message(room_key, ['"b","offset":1'], "F"),
    ]
    assert delivered == [
        (room_key, ['"a","offset":7'], "E"),
        (wild_key, ['"a","offset":9'], "W"),
        (room_key, ['"b","offset":1'], "F"),
        (wild_key, ['"b","offset":10'], "W"),
    ]


async def test_the_epoch_of_another_process_message_reaches_the_hub_and_a_message_without_one_is_delivered(
    monkeypatch,
):
    layer = GroupsLayer()
    layer.admit.set()
    monkeypatch.setattr(bridge_module, "get_channel_layer", lambda: layer)
    bridge = LayerBridge(Hub())
    await bridge.ready()
    delivered = recorded_deliveries(bridge.hub, monkeypatch)
    receiving = asyncio.create_task(bridge._receive_loop())
    key = "default/room"
    await bridge.join(key)

    base = {"type": "realtime.event", "key": key, "origin": "other"}
    await layer.group_send(group_name_for(key), {**base, "events": ['"a","offset":4'], "epoch": "E"})
    # From a process running code that sends no epoch: delivered, the epoch unknown.
    await layer.group_send(group_name_for(key), {**base, "events": ['"b","offset":5']})
    for _ in range(5):
        await asyncio.sleep(0)
    receiving.cancel()

    assert delivered == [(key, ['"a","offset":4'], "E"), (key, ['"b","offset":5'], None)]


class GroupsLayer(BaseChannelLayer):
    """Keeps group membership and delivers group_send to members; a group_add of a key's
    group waits for ``admit`` (the Redis round trip, held open by the test)."""

    extensions = ["groups"]

    def __init__(self) -> None:
        super().__init__()
        self.groups: dict[str, set[str]] = {}
        self.admit = asyncio.Event()
        self._queues: dict[str, asyncio.Queue[dict[str, Any]]] = {}

    async def new_channel(self, prefix: str = "specific.") -> str:
        return f"{prefix}hub!{len(self._queues) + 1}"

    async def group_add(self, group: str, channel: str) -> None:
        if group != CONTROL_GROUP:
            await self.admit.wait()
        self.groups.setdefault(group, set()).add(channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await asyncio.sleep(0)
        self.groups.get(group, set()).discard(channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        for channel in self.groups.get(group, ()):
            self._queue(channel).put_nowait(message)

    async def receive(self, channel: str) -> dict[str, Any]:
        return await self._queue(channel).get()

    def _queue(self, channel: str) -> asyncio.Queue[dict[str, Any]]:
        return self._queues.setdefault(channel, asyncio.Queue())


async def test_a_sweep_between_a_join_and_its_subscriber_being_indexed_keeps_the_group(monkeypatch):
    """The first subscriber of a key, acked and indexed, stays in the key's group.

    The join's group_add completes a few loop passes before its caller resumes
    and indexes the subscriber; a sweep in between saw a joined key held by
    nobody and left its group: the subscriber, acked, heard nothing published on
    its channel, ever (a player's private channel has one subscriber: every score
    of that player was lost).
    """
    layer = GroupsLayer()
    monkeypatch.setattr(bridge_module, "get_channel_layer", lambda: layer)
    bridge = LayerBridge(Hub())
    await bridge.ready()
    receiving = asyncio.create_task(bridge._receive_loop())
    key, group = "default/player", group_name_for("default/player")

    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    outbox = Outbox(send, limit=1_000, on_overflow=lambda: None)
    outbox.start()
    player = parse_channel("/default/player", allow_wildcard=False)
    subscription = LocalSubscription.create(outbox, "s", player)

    async def subscribe() -> None:  # as subscription_start: join, then index without an await between
        await bridge.join(key)
        bridge.hub.add(subscription)

    subscribing = asyncio.create_task(subscribe())
    await asyncio.sleep(0)  # the subscriber's join is under way
    layer.admit.set()
    # One loop pass at a time: the window opens in the pass where the join task completes.
    while not bridge._joined[key].done():  # noqa: ASYNC110 - the pass matters, not the event
        await asyncio.sleep(0)
    assert not subscribing.done() and not bridge.hub.holds(key)  # the window
    bridge._sweep()
    await subscribing
    for _ in range(5):  # any leave the sweep started reaches the layer
        await asyncio.sleep(0)

    assert layer.groups.get(group) == {bridge._channel}
    # Another process publishes on the channel: the subscriber hears it.
    event = {"type": "realtime.event", "key": key, "events": encoded(1), "origin": "other"}
    await layer.group_send(group, event)
    for _ in range(5):
        await asyncio.sleep(0)
    receiving.cancel()
    assert events_of(sent) == [1]

    # Once nobody holds the key, the next sweep does leave its group.
    bridge.hub.remove(subscription)
    bridge._sweep()
    for _ in range(5):
        await asyncio.sleep(0)
    assert (layer.groups.get(group), key in bridge._joined) == (set(), False)


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
