"""The ``/event/realtime`` WebSocket endpoint: ASGI glue around a
:class:`~realtime.transport.connection.Connection`.

Frames of one connection are handled one at a time, in order, so a publisher's
events keep their order and an unsubscribe never overtakes its subscribe.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from channels.consumer import AsyncConsumer

from realtime.delivery.outbox import AsgiSend
from realtime.transport.connection import Connection

if TYPE_CHECKING:
    from asgiref.typing import ASGIReceiveCallable, ASGISendCallable

# Frames one connection may have handled back to back before others get a turn.
FRAMES_PER_TURN = 100


class RealtimeConsumer(AsyncConsumer):
    """One AppSync Events WebSocket connection, as an ASGI application."""

    async def __call__(
        self, scope: Mapping[str, Any], receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        # Channels would give every connection its own layer channel and receive
        # loop; delivery goes through the per-process hub instead (DESIGN §5).
        # Frames are read straight from ``receive`` rather than through
        # await_many_dispatch, which wraps every read in a new task: when a burst
        # of frames is waiting, each read returns without yielding, so the burst
        # is fanned out in one loop pass and each subscriber's outbox writes it
        # in one flush. A yield every FRAMES_PER_TURN frames keeps one client's
        # backlog from holding the loop.
        # No per-frame close_old_connections() thread hop: the selectors that
        # touch the database run through database_sync_to_async themselves.
        # The server's send is an async function that takes any ASGI message dict;
        # asgiref's event types require every key, even those the spec makes optional.
        server_send = cast(AsgiSend, send)
        connection: Connection | None = None
        handled = 0
        while True:
            message = await receive()
            # Compared on message["type"] itself, so the event's type narrows.
            if message["type"] == "websocket.receive":
                if connection is not None:
                    await connection.handle(message.get("text"))
                handled += 1
                if handled % FRAMES_PER_TURN == 0:
                    await asyncio.sleep(0)
            elif message["type"] == "websocket.connect":
                connection = Connection(scope, server_send)
                await connection.open()
            elif message["type"] == "websocket.disconnect":
                if connection is not None:
                    await connection.closed(message.get("code"))
                return
