"""Occupancy per channel and wildcard: Python, HTTP and the presence channel (PROTOCOL §12)."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from django.test import AsyncClient, override_settings

import realtime
from realtime import handlers
from realtime.handlers import HandlerContext, HandlerKind
from realtime.models import Namespace
from realtime.presence.connections import connections
from realtime.presence.occupancy import Occupancy
from realtime.presence.service import occupancy

from .conftest import (
    INVALID_CHANNEL,
    assert_sent,
    assert_silent,
    data,
    publish,
    subscribe,
    subscribed,
    unsubscribe,
)

pytestmark = pytest.mark.django_db(transaction=True)

# The service's own ticks never come within a test: updates are streamed by hand.
QUIET = {"OCCUPANCY_INTERVAL": 3600.0, "OCCUPANCY_PROCESS_TTL": 7200.0}


@pytest.fixture
def room() -> str:
    # A channel of its own per test: with Redis, counts of earlier tests' processes linger.
    return f"/default/room-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The coalescing clock, moved by the test."""
    now = [1000.0]
    monkeypatch.setattr(occupancy, "clock", lambda: now[0])
    return now


def occupancy_event(sub_id: str, channel: str, subscriptions: int, connections: int) -> dict[str, Any]:
    payload = {
        "type": "occupancy",
        "channel": channel,
        "subscriptions": subscriptions,
        "connections": connections,
    }
    return data(sub_id, json.dumps(payload, separators=(",", ":")))


async def watching(comm, sub_id: str, channel: str) -> dict[str, Any]:
    """Subscribe to the presence channel of ``channel``; returns the snapshot that follows the ack."""
    await subscribed(comm, sub_id, f"/$presence{channel}")
    return await comm.receive_json_from(1)


# -- counting -------------------------------------------------------------------------------


async def test_occupancy_counts_subscriptions_and_distinct_connections_per_channel_and_wildcard(
    connect, room
) -> None:
    first = await connect()
    second = await connect()
    await subscribed(first, "a", room)
    await subscribed(first, "b", room)  # the same channel twice on one connection
    await subscribed(second, "a", room)
    await subscribed(second, "w", "/default/*")

    assert await realtime.aoccupancy(room) == Occupancy(room, 3, 2)
    # A wildcard is counted as itself, not as the channels it matches.
    assert await realtime.aoccupancy("/default/*") == Occupancy("/default/*", 1, 1)
    assert await realtime.aoccupancy(room + "/below") == Occupancy(room + "/below", 0, 0)


async def test_unsubscribing_and_closing_take_their_subscriptions_off_the_count(connect, room) -> None:
    first = await connect()
    second = await connect()
    await subscribed(first, "a", room)
    await subscribed(first, "b", room)
    await subscribed(second, "a", room)

    await unsubscribe(first, "b")
    await assert_sent(first, {"type": "unsubscribe_success", "id": "b"})
    assert await realtime.aoccupancy(room) == Occupancy(room, 2, 2)
    await second.disconnect()
    assert await realtime.aoccupancy(room) == Occupancy(room, 1, 1)


async def test_watchers_are_not_counted(connect, room) -> None:
    comm = await connect()
    await watching(comm, "p", room)

    assert await realtime.aoccupancy(room) == Occupancy(room, 0, 0)


def test_occupancy_reads_from_sync_code_too(room) -> None:
    assert realtime.occupancy(room) == Occupancy(room, 0, 0)


# -- the presence channel ----------------------------------------------------------------------


@override_settings(REALTIME=QUIET)
async def test_a_watcher_gets_the_occupancy_at_once_then_one_update_per_interval(
    connect, room, clock
) -> None:
    watcher = await connect()
    members = await connect()
    assert await watching(watcher, "p", room) == occupancy_event("p", room, 0, 0)

    for number in range(50):
        await subscribed(members, f"s{number}", room)
    # Within the interval: nothing, however many came.
    assert await occupancy.stream_once() == 0
    await assert_silent(watcher)

    clock[0] += 3600
    assert await occupancy.stream_once() == 1
    await assert_sent(watcher, occupancy_event("p", room, 50, 1))
    # Nothing changed: nothing sent, even once the interval has passed.
    clock[0] += 3600
    assert await occupancy.stream_once() == 0
    await assert_silent(watcher)


@override_settings(REALTIME=QUIET)
async def test_the_presence_channel_of_a_wildcard_counts_the_wildcard(connect, clock) -> None:
    watcher = await connect()
    member = await connect()
    assert await watching(watcher, "p", "/default/*") == occupancy_event("p", "/default/*", 0, 0)

    await subscribed(member, "w", "/default/*")
    clock[0] += 3600
    await occupancy.stream_once()

    await assert_sent(watcher, occupancy_event("p", "/default/*", 1, 1))


async def test_nobody_publishes_to_a_presence_channel(connect, room) -> None:
    comm = await connect()
    await publish(comm, "p1", f"/$presence{room}", ['"x"'])

    await assert_sent(comm, {"type": "publish_error", "id": "p1", "errors": [INVALID_CHANNEL]})


@pytest.fixture
def secret_rooms() -> Iterator[None]:
    @handlers.on_subscribe("default")
    def no_secrets(ctx: HandlerContext) -> None:
        if "secret" in ctx.channel.segments:
            raise handlers.Reject("Not this one.")

    yield
    handlers.unregister(HandlerKind.SUBSCRIBE, "default")


async def test_a_client_refused_a_channel_is_refused_its_presence_channel_too(
    connect, secret_rooms, make_api_key
) -> None:
    comm = await connect()
    refusal = {"errorType": "BadRequestException", "message": "Not this one."}

    await subscribe(comm, "s", "/default/secret")
    await assert_sent(comm, {"type": "subscribe_error", "id": "s", "errors": [refusal]})
    await subscribe(comm, "p", "/$presence/default/secret")
    await assert_sent(comm, {"type": "subscribe_error", "id": "p", "errors": [refusal]})
    await assert_silent(comm)


async def test_a_presence_channel_of_an_unknown_namespace_is_refused(connect) -> None:
    comm = await connect()
    await subscribe(comm, "p", "/$presence/nowhere/room")

    await assert_sent(
        comm, {"type": "subscribe_error", "id": "p", "errors": [{"errorType": "UnauthorizedException"}]}
    )


@override_settings(REALTIME={"OCCUPANCY": False})
async def test_without_occupancy_presence_channels_are_refused(connect, room) -> None:
    comm = await connect()
    await subscribe(comm, "p", f"/$presence{room}")

    await assert_sent(comm, {"type": "subscribe_error", "id": "p", "errors": [INVALID_CHANNEL]})


# -- over HTTP -----------------------------------------------------------------------------------


async def test_occupancy_over_http_is_authorized_like_a_subscribe(
    connect, api_key, room, secret_rooms
) -> None:
    comm = await connect()
    await subscribed(comm, "a", room)
    client = AsyncClient()

    ok = await client.get("/event/presence", {"channel": room}, headers={"x-api-key": api_key})
    wrong_key = await client.get("/event/presence", {"channel": room}, headers={"x-api-key": "rt-nope"})
    refused = await client.get(
        "/event/presence", {"channel": "/default/secret"}, headers={"x-api-key": api_key}
    )
    bad = await client.get("/event/presence", {"channel": "/default/a b"}, headers={"x-api-key": api_key})

    assert (ok.status_code, ok.json()) == (200, {"channel": room, "subscriptions": 1, "connections": 1})
    assert ok["Access-Control-Allow-Origin"] == "*"
    assert (wrong_key.status_code, wrong_key["x-amzn-ErrorType"]) == (401, "UnauthorizedException")
    assert (refused.status_code, refused.json()) == (
        403,
        {"errors": [{"errorType": "BadRequestException", "message": "Not this one."}]},
    )
    assert (bad.status_code, bad.json()) == (400, {"errors": [INVALID_CHANNEL]})


# -- presence: who, where the namespace lists members --------------------------------------------


@pytest.fixture
async def lobby(default_namespace) -> AsyncIterator[str]:
    await Namespace.objects.acreate(name="lobby", presence=True, presence_max_members=2)

    @handlers.on_presence("lobby")
    def shown_as(ctx: HandlerContext) -> dict[str, Any]:
        return {"seat": ctx.channel.segments[-1], "connection": "not this"}

    yield f"/lobby/room-{uuid.uuid4().hex[:8]}"
    handlers.unregister(HandlerKind.PRESENCE, "lobby")


async def member_connection(connect) -> tuple[Any, str]:
    before = {c.id for c in connections.all()}
    comm = await connect()
    (connection_id,) = {c.id for c in connections.all()} - before
    return comm, connection_id


def presence_event(channel: str, subscriptions: int, connections: int | None = None, **extra: Any) -> dict:
    """The watcher's ``data`` frame for these counts and members (``connections`` defaults to all)."""
    payload = {"type": "occupancy", "channel": channel, "subscriptions": subscriptions}
    payload.update(connections=subscriptions if connections is None else connections, **extra)
    return data("p", json.dumps(payload, separators=(",", ":")))


@override_settings(REALTIME=QUIET)
async def test_a_namespace_that_lists_members_shows_who_joined_and_left_up_to_its_cap(
    connect, lobby, clock
) -> None:
    watcher = await connect()
    assert await watching(watcher, "p", lobby) == presence_event(lobby, 0, members=[])
    seat = lobby.rsplit("/", 1)[1]
    (a, a_id), (b, b_id), (c, c_id) = [await member_connection(connect) for _ in range(3)]
    member = {a_id: {"seat": seat, "connection": a_id}, b_id: {"seat": seat, "connection": b_id}}
    member[c_id] = {"seat": seat, "connection": c_id}

    async def streamed(expected: dict[str, Any]) -> None:
        clock[0] += 3600
        assert await occupancy.stream_once() == 1
        await assert_sent(watcher, expected)

    await subscribed(a, "s", lobby)
    await subscribed(a, "t", lobby)  # one member, however many subscriptions
    await streamed(presence_event(lobby, 2, 1, members=[member[a_id]], joined=[member[a_id]], left=[]))
    await a.disconnect()
    await subscribed(b, "s", lobby)
    both = sorted([b_id, c_id])
    await subscribed(c, "s", lobby)
    await streamed(
        presence_event(
            lobby,
            2,
            members=[member[i] for i in both],
            joined=[member[i] for i in both],
            left=[{"connection": a_id}],
        )
    )
    third = await connect()
    await subscribed(third, "s", lobby)
    # Above the cap of 2: counts only.
    await streamed(presence_event(lobby, 3, membersOmitted=True))
    await assert_silent(watcher)


async def test_without_the_namespace_opting_in_presence_channels_carry_counts_only(connect, room) -> None:
    watcher = await connect()

    assert await watching(watcher, "p", room) == occupancy_event("p", room, 0, 0)


def test_a_full_rewrite_still_writes_the_zero_of_a_key_whose_last_subscription_ended() -> None:
    # A process rewrites everything it holds every third of the process TTL; a key whose last
    # subscription ended just before is held no more, and without its zero the other
    # processes would count that subscription until this process dies.
    from realtime.presence.occupancy import LocalCounts

    local = LocalCounts()
    holder, other = object(), object()
    local.added("ns/gone", holder)
    local.added("ns/kept", other)
    assert local.take_changed() == {"ns/gone": (1, 1), "ns/kept": (1, 1)}
    local.removed("ns/gone", holder)

    assert local.everything() == {"ns/gone": (0, 0), "ns/kept": (1, 1)}
    assert local.everything() == {"ns/kept": (1, 1)}
