"""uvicorn's ``websockets-sansio`` WebSocket protocol: less kept per idle connection, and write backpressure.

The protocol ``realtime_serve --server uvicorn`` runs. Per connection it keeps,
for nothing once the socket is open (tracemalloc over 2,000 idle connections,
docs/BENCHMARKS.md):

- an ``asyncio.Queue`` for the application's ``receive`` (four deques and an
  event, about 3 KB): an :class:`~realtime.transport.light_sync.Inbox` does
  what ``receive`` needs in one list;
- an ``asyncio.Event`` saying whether it may write (a 760-byte deque of
  waiters): a :class:`~realtime.transport.light_sync.Flag`;
- the opening handshake's request and response, with their headers (about
  3.5 KB): let go once the handshake is over. The scope holds its own copy of
  the request headers, which is what the application reads.

It also gives the protocol the flow control it lacks: uvicorn waits on that
event before each write but never clears it, because the protocol does not
implement asyncio's ``pause_writing``/``resume_writing``, so a client that
stops reading makes the transport's buffer grow without bound. Here the
transport's high-water mark clears the flag and its low-water mark sets it
again: uvicorn's ``send`` and our direct writer
(:class:`realtime.delivery.direct.UvicornSansIO`) then wait, the outbox
queues, and a subscriber that does not catch up is closed as a slow consumer.

And it lowercases the header names of the scope, as ASGI requires and every
other uvicorn protocol does (this one passes them as the client wrote them, so
a lookup of ``b"x-forwarded-for"`` or ``b"origin"`` missed a client's
``X-Forwarded-For`` or ``Origin``).

Opt-in through :func:`realtime.transport.server_tuning.tune_websocket_servers`;
it changes the protocol class in place (uvicorn has already chosen the class by
the time the application is imported). The frames written are the same bytes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from realtime.transport.light_sync import Flag, Inbox

# Set on the class once it is tuned: installing twice wraps nothing twice.
_TUNED = "_realtime_tuned"


def install() -> None:
    """Tune :class:`WebSocketsSansIOProtocol` in place (idempotent)."""
    protocol: Any = WebSocketsSansIOProtocol
    if protocol.__dict__.get(_TUNED):
        return
    library_init: Callable[..., None] = protocol.__init__
    library_send: Callable[[Any, Any], Awaitable[None]] = protocol.send
    library_handle_connect: Callable[[Any, Any], None] = protocol.handle_connect

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        library_init(self, *args, **kwargs)
        self.queue = Inbox()
        self.writable = Flag(is_set=True)

    def handle_connect(self: Any, event: Any) -> None:
        library_handle_connect(self, event)
        scope = getattr(self, "scope", None)
        if scope is not None:
            # The application's task is created, not yet started: it sees the lowercased names.
            scope["headers"] = [(name.lower(), value) for name, value in scope["headers"]]

    async def send(self: Any, message: Any) -> None:
        if (
            message.get("type") == "websocket.close"
            and self.handshake_complete
            and (self.close_sent or self.transport.is_closing())
        ):
            # The connection is closing already (the client went first, or a close was sent):
            # nothing is left to do. The library raises RuntimeError here, where its legacy
            # protocol and daphne take the close as done.
            return
        await library_send(self, message)
        if self.handshake_complete:
            # Read only while the handshake is answered (uvicorn's handle_connect and send).
            self.__dict__.pop("request", None)
            self.__dict__.pop("response", None)

    def pause_writing(self: Any) -> None:
        self.writable.clear()

    def resume_writing(self: Any) -> None:
        self.writable.set()

    protocol.__init__ = __init__
    protocol.send = send
    protocol.handle_connect = handle_connect
    protocol.pause_writing = pause_writing
    protocol.resume_writing = resume_writing
    setattr(protocol, _TUNED, True)
