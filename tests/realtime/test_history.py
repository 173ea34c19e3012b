"""Channel history and recovery over the WebSocket, on both stores (PROTOCOL §12, "History")."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.test import AsyncClient

import realtime
from realtime.core.paths import ChannelPath, parse_channel
from realtime.delivery.bridge import bridge
from realtime.delivery.history import history, stores
from realtime.delivery.hub import LocalSubscription, hub
from realtime.models import Namespace
from realtime.operations import subscribing
from realtime.operations.subscribing import LiveBuffer, Started
from tests.realtime.conftest import (
    UNAUTHORIZED,
    api_key_authorization,
    assert_published,
    assert_sent,
    assert_silent,
    publish,
    subscribe,
)

pytestmark = pytest.mark.django_db(transaction=True)

# Not the CI's database unless the CI names it (REDIS_URL): ad-hoc runs keep to their own.
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/11"


def _redis_or_skip() -> redis.Redis:
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.RedisError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    return client


def forget_history(client: redis.Redis) -> None:
    """What the store loses when Redis is flushed (only this store's keys: the database is shared)."""
    for name in client.scan_iter("rt:h:*", count=1000):
        client.delete(name)


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, settings: Any) -> Any:
    """Each test runs on the in-process store, then on Redis Streams."""
    if request.param == "memory":
        settings.REALTIME = {**settings.REALTIME, "HISTORY_REDIS_URL": None}
        yield None
        return
    client = _redis_or_skip()
    forget_history(client)
    settings.REALTIME = {**settings.REALTIME, "HISTORY_REDIS_URL": REDIS_URL}
    yield client
    # Connections closed at teardown keep their positions in the background: let them finish,
    # then close this loop's client before the settings change drops it.
    await asyncio.gather(*subscribing._remembering)
    await stores.aclose()
    forget_history(client)


@pytest.fixture
def chat(default_namespace: Namespace) -> Namespace:
    return Namespace.objects.create(name="chat", history_size=500, history_ttl=300)


async def frame(comm: Any) -> dict[str, Any]:
    return json.loads(await comm.receive_from(1))


async def subscribed_at(comm: Any, sub_id: str, channel: str, **extra: Any) -> dict[str, Any]:
    """Subscribe (with any extension fields) and return the ``subscribe_success``."""
    await comm.send_json_to({"type": "subscribe", "id": sub_id, "channel": channel, **extra})
    reply = await frame(comm)
    assert reply["type"] == "subscribe_success", reply
    assert reply["id"] == sub_id
    return reply


async def published(comm: Any, pub_id: str, channel: str, events: list[Any]) -> None:
    await publish(comm, pub_id, channel, [json.dumps(event) for event in events])
    await assert_published(comm, pub_id, list(range(len(events))))


def success(sub_id: str, offset: int, epoch: str, recovered: bool | None = None) -> dict[str, Any]:
    """A history channel's ``subscribe_success``: its position, and whether it recovered."""
    frame: dict[str, Any] = {"type": "subscribe_success", "id": sub_id, "offset": offset, "epoch": epoch}
    if recovered is not None:
        frame["recovered"] = recovered
    return frame


def data(sub_id: str, event: Any, offset: int) -> dict[str, Any]:
    return {"type": "data", "id": sub_id, "event": json.dumps(event), "offset": offset}


# -- byte-identical without history ------------------------------------------------------------


async def test_frames_without_history_are_byte_identical(store: Any, connect: Any) -> None:
    """The golden frames of a namespace without history, whichever store is configured."""
    comm = await connect()
    publisher = await connect()
    await subscribe(comm, "s1", "/default/room")
    assert await comm.receive_from(1) == '{"type":"subscribe_success","id":"s1"}'
    await subscribe(comm, "s2", "/default/*")
    assert await comm.receive_from(1) == '{"type":"subscribe_success","id":"s2"}'

    await publish(publisher, "p1", "/default/room", ['{"a":1}', '"é"'])
    await assert_published(publisher, "p1", [0, 1])

    frames = sorted([await comm.receive_from(1) for _ in range(4)])
    assert frames == sorted(
        [
            '{"type":"data","id":"s1","event":"{\\"a\\":1}"}',
            '{"type":"data","id":"s1","event":"\\"é\\""}',
            '{"type":"data","id":"s2","event":"{\\"a\\":1}"}',
            '{"type":"data","id":"s2","event":"\\"é\\""}',
        ]
    )
    await assert_silent(comm)


async def test_since_on_a_namespace_without_history_is_not_recovered(store: Any, connect: Any) -> None:
    comm = await connect()
    await comm.send_json_to(
        {"type": "subscribe", "id": "s1", "channel": "/default/room", "since": {"offset": 3, "epoch": "x"}}
    )
    assert await comm.receive_from(1) == '{"type":"subscribe_success","id":"s1","recovered":false}'


# -- positions ---------------------------------------------------------------------------------


async def test_each_stream_numbers_its_publications(store: Any, chat: Namespace, connect: Any) -> None:
    comm = await connect()
    publisher = await connect()
    room = await subscribed_at(comm, "room", "/chat/room")
    wild = await subscribed_at(comm, "wild", "/chat/*")
    assert room == success("room", 0, room["epoch"])
    assert wild == success("wild", 0, wild["epoch"])
    assert len(room["epoch"]) == 16

    await published(publisher, "p1", "/chat/other", ["elsewhere"])
    assert await frame(comm) == data("wild", "elsewhere", 1)
    await published(publisher, "p2", "/chat/room", ["x", "y"])

    frames = [await frame(comm) for _ in range(4)]
    assert [f for f in frames if f["id"] == "room"] == [data("room", "x", 1), data("room", "y", 2)]
    assert [f for f in frames if f["id"] == "wild"] == [data("wild", "x", 2), data("wild", "y", 3)]
    await assert_silent(comm)


# -- explicit recovery ---------------------------------------------------------------------------


async def test_since_replays_what_was_missed_then_live_events(
    store: Any, chat: Namespace, connect: Any
) -> None:
    first = await connect()
    publisher = await connect()
    epoch = (await subscribed_at(first, "s1", "/chat/room"))["epoch"]
    await published(publisher, "p1", "/chat/room", [1, 2, 3])
    assert [await frame(first) for _ in range(3)] == [data("s1", n, n) for n in (1, 2, 3)]
    await first.disconnect()
    await published(publisher, "p2", "/chat/room", [4, 5])

    again = await connect()
    reply = await subscribed_at(again, "s1", "/chat/room", since={"offset": 3, "epoch": epoch})
    assert reply == success("s1", 5, epoch, recovered=True)
    assert [await frame(again) for _ in range(2)] == [data("s1", 4, 4), data("s1", 5, 5)]
    await published(publisher, "p3", "/chat/room", [6])
    assert await frame(again) == data("s1", 6, 6)
    await assert_silent(again)


async def test_a_wildcard_recovers_every_channel_below_it_and_nothing_else(
    store: Any, chat: Namespace, connect: Any
) -> None:
    publisher = await connect()
    await published(publisher, "p1", "/chat/a/one", ["a1"])
    await published(publisher, "p2", "/chat/b", ["b"])
    await published(publisher, "p3", "/chat/a/two", ["a2"])

    comm = await connect()
    probe = await subscribed_at(comm, "probe", "/chat/a/*")
    reply = await subscribed_at(comm, "s1", "/chat/a/*", since={"offset": 0, "epoch": probe["epoch"]})
    assert reply == success("s1", 2, probe["epoch"], recovered=True)
    assert [await frame(comm) for _ in range(2)] == [data("s1", "a1", 1), data("s1", "a2", 2)]
    await assert_silent(comm)


async def test_more_missed_than_the_limit_is_not_recovered(
    store: Any, chat: Namespace, connect: Any, settings: Any
) -> None:
    settings.REALTIME = {**settings.REALTIME, "HISTORY_RECOVER_LIMIT": 100}
    publisher = await connect()
    for n in range(30):
        await published(publisher, f"p{n}", "/chat/room", [n * 5 + i for i in range(5)])

    comm = await connect()
    probe = await subscribed_at(comm, "probe", "/chat/room")
    assert probe["offset"] == 150
    late = await subscribed_at(comm, "late", "/chat/room", since={"offset": 50, "epoch": probe["epoch"]})
    assert late == success("late", 150, probe["epoch"], recovered=True)
    assert [await frame(comm) for _ in range(100)] == [data("late", n, n + 1) for n in range(50, 150)]
    lost = await subscribed_at(comm, "lost", "/chat/room", since={"offset": 0, "epoch": probe["epoch"]})
    assert lost == success("lost", 150, probe["epoch"], recovered=False)
    await assert_silent(comm)


async def test_trimmed_history_is_not_recovered(
    store: Any, default_namespace: Namespace, connect: Any
) -> None:
    await Namespace.objects.acreate(name="chat", history_size=3)
    publisher = await connect()
    await published(publisher, "p1", "/chat/room", [1, 2, 3, 4, 5])

    comm = await connect()
    probe = await subscribed_at(comm, "probe", "/chat/room")
    kept = await subscribed_at(comm, "kept", "/chat/room", since={"offset": 2, "epoch": probe["epoch"]})
    assert kept["recovered"] is True
    assert [await frame(comm) for _ in range(3)] == [data("kept", n, n) for n in (3, 4, 5)]
    trimmed = await subscribed_at(comm, "trimmed", "/chat/room", since={"offset": 1, "epoch": probe["epoch"]})
    assert trimmed["recovered"] is False
    await assert_silent(comm)


async def test_a_lost_history_gets_a_new_epoch(store: Any, chat: Namespace, connect: Any) -> None:
    publisher = await connect()
    comm = await connect()
    epoch = (await subscribed_at(comm, "s1", "/chat/room"))["epoch"]
    await published(publisher, "p1", "/chat/room", [1, 2])
    assert [await frame(comm) for _ in range(2)] == [data("s1", 1, 1), data("s1", 2, 2)]

    if store is None:
        stores.memory.clear()
    else:
        forget_history(store)
    await published(publisher, "p2", "/chat/room", [3])
    assert await frame(comm) == data("s1", 3, 1)

    reply = await subscribed_at(comm, "s2", "/chat/room", since={"offset": 2, "epoch": epoch})
    assert reply["recovered"] is False
    assert reply["epoch"] != epoch
    assert reply["offset"] == 1
    await assert_silent(comm)


async def test_a_malformed_since_is_a_subscribe_error(store: Any, chat: Namespace, connect: Any) -> None:
    comm = await connect()
    await comm.send_json_to(
        {"type": "subscribe", "id": "s1", "channel": "/chat/room", "since": {"offset": -1}}
    )
    await assert_sent(
        comm,
        {
            "type": "subscribe_error",
            "id": "s1",
            "errors": [
                {"errorType": "BadRequestException", "message": "since.offset must be a non-negative integer"}
            ],
        },
    )


async def test_recovery_needs_the_subscribe_authorization(
    store: Any, chat: Namespace, connect: Any, make_api_key: Any
) -> None:
    publisher = await connect()
    await published(publisher, "p1", "/chat/room", ["secret"])
    comm = await connect()
    await subscribe(comm, "s1", "/chat/room", api_key_authorization("rt-wrong"))
    await comm.send_json_to(
        {
            "type": "subscribe",
            "id": "s1",
            "channel": "/chat/room",
            "since": {"offset": 0, "epoch": ""},
            "authorization": api_key_authorization("rt-wrong"),
        }
    )
    for _ in range(2):
        reply = await frame(comm)
        assert reply["type"] == "subscribe_error"
    await assert_silent(comm)


# -- transparent recovery (Amplify re-subscribing with the same id) -------------------------------


async def test_a_resubscribe_with_the_same_id_gets_what_it_missed(
    store: Any, chat: Namespace, connect: Any, make_api_key: Any
) -> None:
    publisher = await connect()
    first = await connect()
    epoch = (await subscribed_at(first, "same-id", "/chat/*"))["epoch"]
    await published(publisher, "p1", "/chat/a", ["seen"])
    assert await frame(first) == data("same-id", "seen", 1)
    await first.disconnect()
    await published(publisher, "p2", "/chat/a", ["missed-1"])
    await published(publisher, "p3", "/chat/b", ["missed-2"])

    # Another principal with the same subscription id resumes nothing of it.
    stranger = await connect(await sync_to_async(make_api_key)(description="stranger"))
    reply = await subscribed_at(stranger, "same-id", "/chat/*")
    assert reply == success("same-id", 3, epoch)

    again = await connect()
    reply = await subscribed_at(again, "same-id", "/chat/*")
    assert reply == success("same-id", 3, epoch, recovered=True)
    assert [await frame(again) for _ in range(2)] == [
        data("same-id", "missed-1", 2),
        data("same-id", "missed-2", 3),
    ]
    await published(publisher, "p4", "/chat/a", ["live"])
    assert await frame(again) == data("same-id", "live", 4)
    assert await frame(stranger) == data("same-id", "live", 4)
    await assert_silent(again)

    # The position follows the client: after the next reconnect nothing more is missing.
    await again.disconnect()
    third = await connect()
    third_reply = await subscribed_at(third, "same-id", "/chat/*")
    assert third_reply["recovered"] is True
    await assert_silent(third)


async def test_an_unsubscribed_subscription_is_not_resumed(store: Any, chat: Namespace, connect: Any) -> None:
    publisher = await connect()
    first = await connect()
    await subscribed_at(first, "s1", "/chat/room")
    await first.send_json_to({"type": "unsubscribe", "id": "s1"})
    await assert_sent(first, {"type": "unsubscribe_success", "id": "s1"})
    await first.disconnect()
    await published(publisher, "p1", "/chat/room", ["missed"])

    again = await connect()
    reply = await subscribed_at(again, "s1", "/chat/room")
    assert "recovered" not in reply
    await assert_silent(again)


# -- the switch from replay to live --------------------------------------------------------------


class Recorder:
    wire = False

    def __init__(self) -> None:
        self.frames: list[str] = []

    def offer(self, text: str) -> None:
        self.frames.append(text)


def buffering(channel: ChannelPath) -> tuple[Recorder, LocalSubscription, LiveBuffer]:
    """A recovering subscription ``s1`` of ``channel``: live frames held in a buffer, outbox a recorder."""
    recorder = Recorder()
    subscription = LocalSubscription.create(recorder, "s1", channel)  # type: ignore[arg-type]
    buffer = LiveBuffer()
    subscription.outbox = buffer  # type: ignore[assignment]
    return recorder, subscription, buffer


@contextlib.contextmanager
def indexed(subscription: LocalSubscription) -> Iterator[None]:
    """``subscription`` in the hub for the block: live events of its key reach it."""
    hub.add(subscription)
    try:
        yield
    finally:
        hub.remove(subscription)


def test_live_events_held_during_the_replay_go_out_after_it_once() -> None:
    recorder, subscription, buffer = buffering(parse_channel("/chat/room", allow_wildcard=False))
    outbox: Any = recorder
    prefix = subscription.prefix
    # Live frames that arrived while the history was read: 3 is also in the replay.
    buffer.offer(prefix + '"3","offset":3}')
    buffer.offer(prefix + '"4","offset":4}')
    started = Started(
        subscription,
        {"offset": 3, "epoch": "E", "recovered": True},
        [(2, '"2"'), (3, '"3"')],
        outbox,
        buffer,
    )

    started.acknowledge("s1", outbox)
    subscription.outbox.offer(prefix + '"5","offset":5}')

    assert recorder.frames == [
        '{"type":"subscribe_success","id":"s1","offset":3,"epoch":"E","recovered":true}',
        '{"type":"data","id":"s1","event":"2","offset":2}',
        '{"type":"data","id":"s1","event":"3","offset":3}',
        '{"type":"data","id":"s1","event":"4","offset":4}',
        '{"type":"data","id":"s1","event":"5","offset":5}',
    ]
    assert subscription.outbox is outbox


def test_a_replayed_event_that_arrives_live_after_the_replay_is_not_sent_again() -> None:
    # A publication takes its offset before its layer message reaches this process: the
    # history read can return it, and its live copy come after subscribe_success went out.
    channel = parse_channel("/chat/late", allow_wildcard=False)
    recorder, subscription, buffer = buffering(channel)
    outbox: Any = recorder
    with indexed(subscription):
        started = Started(
            subscription, {"offset": 3, "epoch": "E", "recovered": True}, [(3, '"3"')], outbox, buffer, seen=2
        )
        started.acknowledge("s1", outbox)
        hub.deliver(channel.key, ['"2","offset":2', '"3","offset":3', '"4","offset":4'])

    assert recorder.frames == [
        '{"type":"subscribe_success","id":"s1","offset":3,"epoch":"E","recovered":true}',
        '{"type":"data","id":"s1","event":"3","offset":3}',
        '{"type":"data","id":"s1","event":"4","offset":4}',
    ]


# (the replay's epoch, a held event's epoch, its offset, sent): the subscriber has up to 5.
HELD_TABLE = [
    # The replay's epoch: at or below 5 the subscriber has it.
    ("E", "E", 4, False),
    ("E", "E", 5, False),
    ("E", "E", 6, True),
    # Another epoch: the stream restarted, numbering from 1 again; all of it is new.
    ("E", "F", 1, True),
    ("E", "F", 5, True),
    # An event of unknown epoch (a process that sends none), or a replay of unknown epoch: by offset.
    ("E", None, 5, False),
    ("E", None, 6, True),
    (None, "F", 5, False),
    (None, "F", 6, True),
]


@pytest.mark.parametrize(("replay_epoch", "epoch", "offset", "sent"), HELD_TABLE)
def test_a_held_live_event_is_dropped_only_when_the_subscriber_has_it(
    replay_epoch: str | None, epoch: str | None, offset: int, sent: bool
) -> None:
    recorder, subscription, buffer = buffering(parse_channel("/chat/room", allow_wildcard=False))
    outbox: Any = recorder
    buffer.epoch = epoch
    buffer.offer(subscription.prefix + f'"e{offset}","offset":{offset}}}')
    started = Started(subscription, {"recovered": True}, (), outbox, buffer, seen=5, epoch=replay_epoch)

    started.acknowledge("s1", outbox)

    success = '{"type":"subscribe_success","id":"s1","recovered":true}'
    held = f'{{"type":"data","id":"s1","event":"e{offset}","offset":{offset}}}'
    assert recorder.frames == [success, held] if sent else [success]


def test_a_subscription_gone_while_buffering_leaves_nothing_in_the_hub() -> None:
    channel = parse_channel("/chat/gone", allow_wildcard=False)
    _, subscription, buffer = buffering(channel)
    with indexed(subscription):
        hub.deliver(channel.key, ['"e1","offset":1'], "E")

    assert buffer.frames == [('{"type":"data","id":"s1","event":"e1","offset":1}', "E")]
    assert channel.key not in hub._buffering


def test_a_restarted_streams_events_held_during_the_replay_go_out_after_it_each_once() -> None:
    # Redis lost the stream while the history was read: its new epoch numbers from 1 again,
    # offsets the replay of the old epoch also has, yet publications the subscriber has not.
    channel = parse_channel("/chat/restarted", allow_wildcard=False)
    recorder, subscription, buffer = buffering(channel)
    outbox: Any = recorder
    with indexed(subscription):
        hub.deliver(channel.key, ['"new1","offset":1', '"new2","offset":2'], "new")
        started = Started(
            subscription,
            {"offset": 3, "epoch": "old", "recovered": True},
            [(2, '"old2"'), (3, '"old3"')],
            outbox,
            buffer,
            seen=1,
            epoch="old",
        )
        started.acknowledge("s1", outbox)
        # Its outbox back, the subscription's buffer is told no more epochs.
        assert channel.key not in hub._buffering
        hub.deliver(channel.key, ['"new3","offset":3'], "new")

    assert recorder.frames == [
        '{"type":"subscribe_success","id":"s1","offset":3,"epoch":"old","recovered":true}',
        '{"type":"data","id":"s1","event":"old2","offset":2}',
        '{"type":"data","id":"s1","event":"old3","offset":3}',
        '{"type":"data","id":"s1","event":"new1","offset":1}',
        '{"type":"data","id":"s1","event":"new2","offset":2}',
        '{"type":"data","id":"s1","event":"new3","offset":3}',
    ]
    assert subscription.outbox is outbox


async def test_a_live_copy_arriving_long_after_the_replay_is_still_not_sent_twice(
    store: Any, chat: Namespace, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(hub, "clock", lambda: now[0])
    first = await connect()
    publisher = await connect()
    epoch = (await subscribed_at(first, "s1", "/chat/room"))["epoch"]
    await published(publisher, "p1", "/chat/room", [1, 2])
    assert [await frame(first) for _ in range(2)] == [data("s1", n, n) for n in (1, 2)]
    await first.disconnect()

    # 3 takes its offset, and its layer message is late (a loaded layer): held here, sent below.
    late: list[Any] = []

    async def held(*args: Any) -> None:
        late.append(args)

    with monkeypatch.context() as layer_behind:
        layer_behind.setattr(bridge, "fan_out", held)
        await published(publisher, "p2", "/chat/room", [3])

    again = await connect()
    reply = await subscribed_at(again, "s1", "/chat/room", since={"offset": 2, "epoch": epoch})
    assert reply == success("s1", 3, epoch, recovered=True)
    assert await frame(again) == data("s1", 3, 3)

    # Longer after than any time limit (FENCE_SECONDS, the layer's message expiry), same stream.
    now[0] += 3600
    [(path, events, keyed, epochs)] = late
    assert epochs == {"chat/room": epoch, "chat/*": epochs["chat/*"]}
    sent = await bridge.fan_out(path, events, keyed, epochs)
    if sent is not None:  # a channels_redis layer: this process delivers once the layer has it
        await sent
    await assert_silent(again)

    await published(publisher, "p3", "/chat/room", [4])
    assert await frame(again) == data("s1", 4, 4)
    await assert_silent(again)


async def test_a_stream_restarted_under_a_new_epoch_goes_through_the_fence(
    store: Any, chat: Namespace, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clock stands still: only the epoch can tell the restarted stream from late copies.
    monkeypatch.setattr(hub, "clock", lambda: 1000.0)
    first = await connect()
    publisher = await connect()
    epoch = (await subscribed_at(first, "s1", "/chat/room"))["epoch"]
    await published(publisher, "p1", "/chat/room", [1, 2])
    assert [await frame(first) for _ in range(2)] == [data("s1", n, n) for n in (1, 2)]
    await first.disconnect()
    again = await connect()
    reply = await subscribed_at(again, "s1", "/chat/room", since={"offset": 2, "epoch": epoch})
    assert reply == success("s1", 2, epoch, recovered=True)  # fenced at 2

    if store is None:
        stores.memory.clear()
    else:
        forget_history(store)
    await published(publisher, "p2", "/chat/room", [3, 4])

    assert [await frame(again) for _ in range(2)] == [data("s1", 3, 1), data("s1", 4, 2)]
    await assert_silent(again)


# -- the read API: GET /event/history and realtime.history -----------------------------------------


async def read_history(key: str, **params: Any) -> tuple[int, dict[str, Any]]:
    response = await AsyncClient().get("/event/history", params, headers={"x-api-key": key})
    return response.status_code, json.loads(response.content)


async def test_the_history_api_pages_a_channel(
    store: Any, chat: Namespace, connect: Any, api_key: str
) -> None:
    publisher = await connect()
    epoch = (await subscribed_at(await connect(), "s1", "/chat/room"))["epoch"]
    await published(publisher, "p1", "/chat/room", [1, 2, 3, 4, 5])
    await published(publisher, "p2", "/chat/other", ["other"])

    def page(offset: int, complete: bool, events: list[int], channel: str = "/chat/room") -> dict[str, Any]:
        entries = [{"offset": n, "event": json.dumps(n)} for n in events]
        return {"channel": channel, "epoch": epoch, "offset": offset, "complete": complete, "events": entries}

    assert await read_history(api_key, channel="/chat/room", since=2) == (200, page(5, True, [3, 4, 5]))
    assert await read_history(api_key, channel="/chat/room", limit=2) == (200, page(5, True, [4, 5]))
    assert await read_history(api_key, channel="/chat/room", since=0, limit=2) == (
        200,
        page(5, False, [1, 2]),
    )
    assert await read_history(api_key, channel="/chat/room", since=5) == (200, page(5, True, []))
    # Offsets of a lost history: the latest page, not complete.
    lost = await read_history(api_key, channel="/chat/room", since=1, epoch="gone", limit=2)
    assert lost == (200, page(5, False, [4, 5]))

    status, wild = await read_history(api_key, channel="/chat/*", since=4)
    assert status == 200
    assert [(e["offset"], json.loads(e["event"])) for e in wild["events"]] == [(5, 5), (6, "other")]

    assert [entry async for entry in _payloads("/chat/room", 3)] == [(4, 4), (5, 5)]


async def _payloads(channel: str, since: int) -> Any:
    page = await realtime.ahistory(channel, since=since)
    for entry in page.payloads():
        yield entry


async def test_the_history_api_is_authorized_like_a_subscribe(
    store: Any, chat: Namespace, connect: Any, api_key: str
) -> None:
    comm = await connect()
    await published(comm, "p1", "/chat/room", ["secret"])

    status, body = await read_history("rt-wrong", channel="/chat/room", since=0)
    assert (status, body) == (401, {"errors": [UNAUTHORIZED]})
    assert await read_history(api_key, channel="/default/room") == (
        400,
        {"errors": [{"errorType": "BadRequestException", "message": "This namespace keeps no history"}]},
    )
    assert await read_history(api_key, channel="/chat/room", since="-1") == (
        400,
        {"errors": [{"errorType": "BadRequestException", "message": "since must be a non-negative integer"}]},
    )
    assert await read_history(api_key, channel="/chat/room", limit=0) == (
        400,
        {"errors": [{"errorType": "BadRequestException", "message": "limit must be between 1 and 300"}]},
    )


# -- the store unreachable ---------------------------------------------------------------------------


async def test_a_publication_the_history_cannot_take_reaches_nobody(
    store: Any, chat: Namespace, connect: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    comm = await connect()
    publisher = await connect()
    await subscribed_at(comm, "s1", "/chat/room")

    async def unreachable(*args: Any) -> None:
        raise ConnectionError("the store is down")

    monkeypatch.setattr(type(history()), "append", unreachable)
    await publish(publisher, "p1", "/chat/room", ["1"])

    await assert_sent(
        publisher,
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
    assert "realtime history could not append to /chat/room: the store is down" in caplog.text


async def test_a_subscribe_the_history_cannot_answer_goes_live_unrecovered(
    store: Any, chat: Namespace, connect: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    comm = await connect()
    publisher = await connect()

    async def unreachable(*args: Any) -> None:
        raise ConnectionError("the store is down")

    monkeypatch.setattr(type(history()), "read", unreachable)
    await comm.send_json_to(
        {"type": "subscribe", "id": "s1", "channel": "/chat/room", "since": {"offset": 0, "epoch": "e"}}
    )
    assert await comm.receive_from(1) == '{"type":"subscribe_success","id":"s1","recovered":false}'
    await subscribe(comm, "s2", "/chat/room")
    assert await comm.receive_from(1) == '{"type":"subscribe_success","id":"s2"}'
    monkeypatch.undo()

    await published(publisher, "p1", "/chat/room", ["live"])
    assert sorted([(await frame(comm))["id"] for _ in range(2)]) == ["s1", "s2"]
    await assert_silent(comm)
