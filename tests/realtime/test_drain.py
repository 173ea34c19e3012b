"""The drain of a server process: each WebSocket closed with 1001 once what it was doing is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from realtime import handlers
from realtime.handlers import HandlerContext, HandlerKind, IncomingEvent
from realtime.transport.drain import drain

from .conftest import (
    CONNECTION_ACK,
    KA,
    assert_closed,
    assert_published,
    assert_sent,
    assert_silent,
    connection_init,
    publish,
    subscribed,
)

pytestmark = pytest.mark.django_db(transaction=True)

GOING_AWAY = 1001


@pytest.fixture
def held() -> Iterator[dict[str, Any]]:
    """An on_publish handler for "default" that waits for ``release`` and counts its calls."""
    state: dict[str, Any] = {"calls": [], "release": asyncio.Event(), "entered": asyncio.Event()}

    async def on_publish(ctx: HandlerContext) -> list[IncomingEvent]:
        state["calls"].append([event.payload for event in ctx.events])
        state["entered"].set()
        await state["release"].wait()
        return list(ctx.events)

    handlers.on_publish("default")(on_publish)
    yield state
    handlers.unregister(HandlerKind.PUBLISH, "default")


async def ready(comm: Any) -> None:
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ACK)
    await assert_sent(comm, KA)


async def test_a_drained_socket_is_closed_with_1001_going_away(connect) -> None:
    comm = await connect()
    await ready(comm)
    await subscribed(comm, "s1", "/default/room")

    assert await drain.websockets(within=1.0) == 1

    message = await assert_closed(comm, GOING_AWAY)
    assert message["reason"] == "going away"


async def test_the_publish_under_way_is_answered_before_the_close_and_later_frames_never_run(
    connect, held
) -> None:
    comm = await connect()
    await ready(comm)
    await publish(comm, "p1", "/default/room", ['"first"'])
    await asyncio.wait_for(held["entered"].wait(), 1)

    draining = asyncio.ensure_future(drain.websockets(within=5.0))
    await asyncio.sleep(0.05)
    # Read after the drain began: never handled (the client will send it again elsewhere).
    await publish(comm, "p2", "/default/room", ['"second"'])
    await assert_silent(comm)
    held["release"].set()

    await assert_published(comm, "p1", [0])
    await assert_closed(comm, GOING_AWAY)
    assert await draining == 1
    assert held["calls"] == [["first"]]


async def test_an_operation_that_outlasts_the_drain_timeout_does_not_hold_the_close(connect, held) -> None:
    comm = await connect()
    await ready(comm)
    await publish(comm, "p1", "/default/room", ['"slow"'])
    await asyncio.wait_for(held["entered"].wait(), 1)

    await drain.websockets(within=0.1)

    await assert_closed(comm, GOING_AWAY)
    held["release"].set()


def test_a_recovery_with_nothing_missed_drops_held_live_events_the_client_has_seen() -> None:
    """A live event that reaches this process after the client saw it through another one."""
    from realtime.core.history import tail
    from realtime.core.paths import parse_channel
    from realtime.delivery.hub import LocalSubscription
    from realtime.operations.subscribing import LiveBuffer, Started

    sent: list[str] = []

    class Box:
        def offer(self, frame: str) -> bool:
            sent.append(frame)
            return True

    box: Any = Box()
    subscription = LocalSubscription.create(box, "s1", parse_channel("/default/room", allow_wildcard=False))
    buffer = LiveBuffer()
    for offset in (4, 5, 6):
        buffer.offer(subscription.prefix + tail(f'"e{offset}"', offset) + "}")
    started = Started(subscription, {"recovered": True}, (), box, buffer, seen=5)

    started.acknowledge("s1", box)

    assert sent[1:] == [subscription.prefix + tail('"e6"', 6) + "}"]
