"""on_connect / on_disconnect: refuse or admit a connection, and hear of every close exactly once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import override_settings

from realtime import handlers
from realtime.core.protocol import CloseCode
from realtime.delivery.outbox import SLOW_CONSUMER_REASON
from realtime.handlers import CloseCause, ConnectionContext, HandlerKind
from realtime.presence.connections import connections

from .conftest import (
    CONNECTION_ACK,
    KA,
    assert_closed,
    assert_sent,
    assert_silent,
    connection_init,
    publish,
    receive_frames,
    subscribed,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def register() -> Iterator[Callable[[HandlerKind, Any], None]]:
    kinds: list[HandlerKind] = []

    def register_(kind: HandlerKind, fn: Any) -> None:
        {HandlerKind.CONNECT: handlers.on_connect, HandlerKind.DISCONNECT: handlers.on_disconnect}[kind](fn)
        kinds.append(kind)

    yield register_
    for kind in kinds:
        handlers.unregister(kind, handlers.SITE)


@pytest.fixture
def ended(register: Callable[[HandlerKind, Any], None]) -> list[ConnectionContext]:
    """Every on_disconnect context, in order."""
    seen: list[ConnectionContext] = []

    async def on_disconnect(ctx: ConnectionContext) -> None:
        seen.append(ctx)

    register(HandlerKind.DISCONNECT, on_disconnect)
    return seen


async def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


# -- on_connect ---------------------------------------------------------------------------


async def refused(comm, error_type: str, code: int, message: str) -> None:
    """The client's connection_init is answered with one connection_error carrying this error."""
    await connection_init(comm)
    error = {"errorType": error_type, "errorCode": code, "message": message}
    await assert_sent(comm, {"type": "connection_error", "errors": [error]})


async def test_a_refusal_by_on_connect_is_a_connection_error_with_its_type_then_a_normal_close(
    connect, register, ended
) -> None:
    def on_connect(ctx: ConnectionContext) -> None:
        raise handlers.Reject("Not today.")

    register(HandlerKind.CONNECT, on_connect)
    comm = await connect()

    await refused(comm, "BadRequestException", 403, "Not today.")
    await assert_closed(comm, CloseCode.NORMAL)
    await comm.disconnect()
    # A refused connection was never admitted: nothing to hear of its close.
    assert ended == []


async def test_on_connect_may_refuse_as_unauthorized(connect, register) -> None:
    async def on_connect(ctx: ConnectionContext) -> None:
        raise handlers.Unauthorized()

    register(HandlerKind.CONNECT, on_connect)
    comm = await connect()

    await refused(comm, "UnauthorizedException", 401, "You are not authorized to make this call.")


@override_settings(REALTIME={"HANDLER_TIMEOUT": 0.05})
async def test_an_on_connect_that_overruns_refuses_the_connection_as_a_server_fault(
    connect, register
) -> None:
    async def on_connect(ctx: ConnectionContext) -> None:
        await asyncio.sleep(1)

    register(HandlerKind.CONNECT, on_connect)
    comm = await connect()

    await refused(comm, "HandlerTimeout", 504, "The event handler did not finish in time.")


async def test_data_from_on_connect_reaches_on_disconnect_with_the_context(connect, register, ended) -> None:
    opened: list[ConnectionContext] = []

    def on_connect(ctx: ConnectionContext) -> dict[str, Any]:  # sync: runs in a worker thread
        opened.append(ctx)
        return {"room": "lobby"}

    register(HandlerKind.CONNECT, on_connect)
    comm = await connect()
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ACK)
    await comm.disconnect(code=4000)

    (first,) = opened
    assert (first.operation, first.identity, first.close_cause, first.source_ip) == (
        "CONNECT",
        None,
        None,
        None,  # the test communicator has no client address
    )
    assert "x-api-key" not in first.request_headers
    (last,) = ended
    assert (last.operation, last.connection_id, last.data, last.close_code, last.close_cause) == (
        "DISCONNECT",
        first.connection_id,
        {"room": "lobby"},
        4000,
        CloseCause.CLIENT,
    )


# -- on_disconnect, exactly once whatever the cause ------------------------------------------


async def test_on_disconnect_runs_once_when_the_client_closes(connect, ended) -> None:
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    await comm.disconnect()

    assert [(ctx.close_code, ctx.close_cause) for ctx in ended] == [(1000, CloseCause.CLIENT)]


async def test_on_disconnect_runs_once_when_the_server_closes(connect, ended) -> None:
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    (connection,) = connections.all()

    connection.close(CloseCode.TRY_AGAIN_LATER, CloseCause.SERVER)  # type: ignore[attr-defined]
    await assert_closed(comm, CloseCode.TRY_AGAIN_LATER)
    await comm.disconnect(code=CloseCode.TRY_AGAIN_LATER)

    assert [(ctx.close_code, ctx.close_cause) for ctx in ended] == [(1013, CloseCause.SERVER)]
    assert len(connections) == 0


async def test_on_disconnect_runs_once_when_the_outbox_overflows(connect, ended) -> None:
    publisher = await connect()
    with override_settings(REALTIME={"OUTBOUND_BUFFER_SIZE": 3}):
        slow = await connect()
    await subscribed(slow, "s1", "/default/*")

    await publish(publisher, "p1", "/default/room", [f'"{n}"' for n in range(5)])
    close = await assert_closed(slow, CloseCode.SLOW_CONSUMER)
    assert close["reason"] == SLOW_CONSUMER_REASON
    await slow.disconnect(code=CloseCode.SLOW_CONSUMER)

    assert [(ctx.close_code, ctx.close_cause) for ctx in ended] == [(1008, CloseCause.SLOW_CONSUMER)]


async def test_on_disconnect_runs_once_when_the_server_stops_serving_the_socket(connect, ended) -> None:
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    # What a server does to its applications when it shuts down: no websocket.disconnect.
    comm.future.cancel()
    await wait_for(lambda: len(ended) == 1)
    await asyncio.sleep(0.05)

    assert [(ctx.close_code, ctx.close_cause) for ctx in ended] == [(None, CloseCause.SHUTDOWN)]
    assert len(connections) == 0


async def test_a_failing_on_disconnect_is_logged_and_the_next_connection_is_served(
    connect, register, caplog
) -> None:
    def on_disconnect(ctx: ConnectionContext) -> None:
        raise RuntimeError("boom")

    register(HandlerKind.DISCONNECT, on_disconnect)
    first = await connect()
    await first.disconnect()
    second = await connect()
    await connection_init(second)

    assert await receive_frames(second, 2) == [CONNECTION_ACK, KA]
    assert "DISCONNECT handler" in caplog.text and "failed" in caplog.text
    await assert_silent(second)


def test_a_second_on_connect_handler_is_refused_at_registration(register) -> None:
    from django.core.exceptions import ImproperlyConfigured

    register(HandlerKind.CONNECT, lambda ctx: None)
    with pytest.raises(ImproperlyConfigured):
        handlers.on_connect(lambda ctx: None)
