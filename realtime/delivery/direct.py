"""Writing pre-built WebSocket frames straight to the server's transport (DESIGN §5).

Under ASGI every frame goes through the server's ``send``: a message dict, the
server's framing (autobahn's, or the ``websockets`` library's), and its write
path, once per frame and subscriber. A server's frames are unmasked, so the
bytes of an event's ``data`` frame are the same for every subscriber with the
same subscription id (:mod:`realtime.core.wsframe`): built once, they can be
written to each connection's transport as they are.

:func:`direct_writer` looks behind the ``send`` the server handed the
application, when the socket is accepted. For the servers it knows it returns a
:class:`DirectWriter` on that connection's transport: daphne (Twisted and
autobahn) and uvicorn (its ``websockets`` and ``websockets-sansio``
implementations). For any other server, or a ``send`` wrapped by middleware, it
returns ``None`` and the outbox keeps using ``send``.

A writer never writes a frame the server's own state forbids: it reports
:data:`GONE` once the server sent or received a close (the outbox then drops
what is queued, as when ``send`` raises for a gone peer), :data:`WAIT` while the
socket's write buffer is over its high-water mark (backpressure: the outbox
waits for :meth:`DirectWriter.writable`), and :data:`WRITABLE` otherwise. Closes
still go through the server (``send``, or autobahn's ``sendCloseFrame``), so its
closing handshake and state follow.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any, ClassVar

# What DirectWriter.state() returns.
WRITABLE = 0
WAIT = 1
GONE = 2


class PeerGone(ConnectionError):
    """The server closed the socket or is closing it: nothing more may be written."""


class DirectWriter:
    """Frames written as bytes to one connection's transport."""

    __slots__ = ()
    server: ClassVar[str]

    def state(self) -> int:
        """:data:`WRITABLE`, :data:`WAIT` (until :meth:`writable`) or :data:`GONE`."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Write whole frames; only after :meth:`state` said :data:`WRITABLE`."""
        raise NotImplementedError

    async def writable(self) -> None:
        """Return once the state may have changed from :data:`WAIT`."""
        raise NotImplementedError


# -- daphne ----------------------------------------------------------------------


def daphne_protocol(send: Any) -> Any:
    """The autobahn protocol behind daphne's ``send`` (``partial(Server.handle_reply, protocol)``)."""
    if isinstance(send, functools.partial) and getattr(send.func, "__name__", None) == "handle_reply":
        protocol = send.args[0] if send.args else None
        if callable(getattr(protocol, "sendCloseFrame", None)):
            return protocol
    return None


class WriteFlow:
    """A Twisted push producer on daphne's transport: Twisted pauses it once the socket's
    write buffer passes ``bufferSize`` (64 KiB) and resumes it when that has drained."""

    __slots__ = ("paused", "_resumed")

    def __init__(self) -> None:
        self.paused = False
        # Created only while a writer waits: most sockets never pause.
        self._resumed: asyncio.Future[None] | None = None

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        resumed, self._resumed = self._resumed, None
        if resumed is not None and not resumed.done():
            resumed.set_result(None)

    def stopProducing(self) -> None:
        self.resumeProducing()

    async def drained(self) -> None:
        if self.paused:
            if self._resumed is None:
                self._resumed = asyncio.get_running_loop().create_future()
            await self._resumed


def write_flow(send: Any) -> WriteFlow | None:
    """Backpressure under daphne, whose ``send`` never waits (Twisted buffers without bound)."""
    protocol = daphne_protocol(send)
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return None
    flow = WriteFlow()
    # daphne leaves the HTTP channel registered as the producer after the upgrade.
    transport.unregisterProducer()
    transport.registerProducer(flow, True)
    return flow


class TwistedWriter(DirectWriter):
    """daphne: bytes to autobahn's Twisted transport, paced by the :class:`WriteFlow`.

    On a plain TCP socket whose Twisted buffer is empty the bytes go to the socket
    at once, as asyncio's transports do: Twisted's own ``write`` buffers them,
    registers the socket with the reactor and unregisters it after the next loop
    pass (two ``epoll_ctl`` calls per write), which cost more than the write itself.
    What the socket does not take goes to Twisted's buffer, in order.
    """

    __slots__ = ("_protocol", "_transport", "_flow", "_open", "_socket")
    server = "daphne"

    def __init__(self, protocol: Any, flow: WriteFlow) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        self._flow = flow
        self._open = protocol.STATE_OPEN
        self._socket = _is_tcp_socket(self._transport)

    def state(self) -> int:
        if self._protocol.state != self._open:
            return GONE
        return WAIT if self._flow.paused else WRITABLE

    def write(self, data: bytes) -> None:
        protocol = self._protocol
        if protocol.send_queue:
            # autobahn is writing chopped frames from its own queue: join it there.
            protocol.sendData(data)
            return
        transport = self._transport
        if (
            self._socket
            and not transport.dataBuffer
            and not transport._tempDataBuffer
            and not transport.disconnecting
        ):
            sent = transport.writeSomeData(data)
            if sent.__class__ is int:
                if sent == len(data):
                    return
                data = data[sent:]
            # Otherwise the connection is lost: Twisted finds out on its next write.
        transport.write(data)

    async def writable(self) -> None:
        await self._flow.drained()


def _is_tcp_socket(transport: Any) -> bool:
    try:
        from twisted.internet.tcp import Server
    except ImportError:  # pragma: no cover - daphne depends on Twisted
        return False
    # Exactly Twisted's TCP server transport: TLS wraps it in a protocol of its own.
    return type(transport) is Server and isinstance(getattr(transport, "_tempDataBuffer", None), list)


# -- uvicorn ---------------------------------------------------------------------


class AsyncioWriter(DirectWriter):
    """uvicorn: bytes to the protocol's asyncio transport."""

    __slots__ = ("_protocol", "_transport", "_open")

    def __init__(self, protocol: Any, open_state: Any) -> None:
        self._protocol = protocol
        self._transport = protocol.transport
        # The OPEN member of the library's state enum, compared by identity.
        self._open = open_state

    def write(self, data: bytes) -> None:
        self._transport.write(data)


class UvicornWebsockets(AsyncioWriter):
    """uvicorn ``--ws websockets`` (the default with ``websockets`` installed): its legacy protocol."""

    __slots__ = ()
    server = "uvicorn-websockets"

    @classmethod
    def create(cls, protocol: Any) -> UvicornWebsockets:
        return cls(protocol, type(protocol.state).OPEN)

    def state(self) -> int:
        protocol = self._protocol
        state = protocol.state
        if state is self._open:
            if self._transport.is_closing():
                return GONE
            # Its FlowControlMixin-style flag, set by the transport's pause_writing().
            return WAIT if protocol._paused else WRITABLE
        # Accepted, but the handshake's response is written by the library's own task.
        return WAIT if state.name == "CONNECTING" else GONE

    async def writable(self) -> None:
        protocol = self._protocol
        if protocol.state.name == "CONNECTING":
            await protocol.handshake_completed_event.wait()
        else:
            # The library's own drain: raises ConnectionClosed if the socket died.
            await protocol.drain()


class UvicornSansIO(AsyncioWriter):
    """uvicorn ``--ws websockets-sansio``: the ``websockets`` sans-I/O connection, and a
    ``writable`` event that the transport's pause_writing() clears."""

    __slots__ = ()
    server = "uvicorn-websockets-sansio"

    @classmethod
    def create(cls, protocol: Any) -> UvicornSansIO:
        return cls(protocol, type(protocol.conn.state).OPEN)

    def state(self) -> int:
        protocol = self._protocol
        if protocol.close_sent or protocol.conn.state is not self._open or self._transport.is_closing():
            return GONE
        return WRITABLE if protocol.writable.is_set() else WAIT

    async def writable(self) -> None:
        await self._protocol.writable.wait()


# uvicorn's protocol classes, by where they are defined (found in the MRO, so subclasses work).
# Its wsproto implementation is not among them (not installed with the project): it gets `send`.
_UVICORN: dict[str, Any] = {
    "uvicorn.protocols.websockets.websockets_impl.WebSocketProtocol": UvicornWebsockets.create,
    "uvicorn.protocols.websockets.websockets_sansio_impl.WebSocketsSansIOProtocol": UvicornSansIO.create,
}


def direct_writer(send: Any, flow: WriteFlow | None) -> DirectWriter | None:
    """A writer on the transport behind ``send``, if the server is one we know; else ``None``.

    Called once the socket is accepted; ``flow`` is daphne's :func:`write_flow`.
    """
    protocol = daphne_protocol(send)
    if protocol is not None:
        # autobahn's state and send queue, as Twisted's autobahn defines them.
        is_open = getattr(protocol, "state", None) == getattr(protocol, "STATE_OPEN", object())
        if flow is None or not is_open or not hasattr(protocol, "send_queue"):
            return None
        return TwistedWriter(protocol, flow)
    owner = getattr(send, "__self__", None)
    if owner is None or getattr(owner, "transport", None) is None:
        return None
    for cls in type(owner).__mro__:
        create = _UVICORN.get(f"{cls.__module__}.{cls.__qualname__}")
        if create is not None:
            writer: DirectWriter = create(owner)
            return writer
    return None
