"""The front door inside daphne: refusals answered before an ASGI application exists (opt-in).

:class:`~realtime.transport.frontdoor.FrontDoor` refuses before Django, but
under daphne a refusal still costs what daphne spends on every request before
the application sees it: Twisted parses the request (including its
``Content-Type``, with the ``email`` package), daphne builds the scope, an
``asyncio.Queue`` and a task for the application instance, and every ``send``
hops back to Twisted through a coroutine. Past a few times what the process can
admit, those refusals alone fill the event loop, and everything (refusals and
admitted joins alike) waits behind them (docs/BENCHMARKS.md, "Crowd-proof entry").

:func:`shed_in_daphne` makes daphne ask the front door as soon as Twisted has
read a whole request: when :meth:`FrontDoor.refusal_now
<realtime.transport.frontdoor.FrontDoor.refusal_now>` refuses it (the process is
overloaded, or a rate is spent in this process's counts), Twisted writes the
same 429 (same headers, same body, same ``Retry-After``) itself, and daphne never
creates an application instance for it. Every other request goes on exactly as
before, through the front door's ASGI layer, which still decides (and counts)
the rates; it stays the portable layer for every other server.

It is opt-in: the site calls it in its ASGI module, after building the front
door (``config/asgi.py``)::

    application = FrontDoor(...)
    shed_in_daphne(application)

WebSocket connects are refused the same way: an upgrade request the front door
refuses at once (the event loop is late, or a connect rate is spent in this
process's counts) is answered in the front door's shape (the upgrade accepted,
``connection_error`` with ``LimitExceededError``, close 1000) by a small Twisted
protocol the connection is handed to (:mod:`realtime.transport.refused_websocket`),
before autobahn or daphne builds anything for it.

A WebSocket upgrade that arrives whole in one read (every browser's and
client library's handshake, :func:`parse_upgrade_request`) skips Twisted's
request altogether: the channel hands the connection and the request's bytes
to daphne's WebSocket protocol itself, as daphne's request would have, or to
the refusal above. Twisted's line-by-line parsing, its ``Request`` and daphne's
``WebRequest`` were about a sixth of a connect storm's CPU; autobahn still parses
and answers the handshake, so what the client sees is the same bytes.

It only changes which request class daphne's HTTP factory uses (its module
attribute ``daphne.server.HTTPFactory``, read when the server starts), so it
works under the plain ``daphne config.asgi:application`` command line and is
inert under any other server.

The channel reads a few of Twisted's own attributes to know a connection is
between requests (``HTTPChannel`` and ``LineReceiver`` state, and the
``_GenericHTTPChannelProtocol`` wrapper daphne's factory builds): they are not
public API, so ``tests/realtime/test_daphne_door.py`` drives a real channel and
``tests/e2e/test_daphne_door.py`` a real daphne, and either fails if a Twisted
upgrade moves them.
"""

from __future__ import annotations

import functools
import re
import time
from typing import Any
from urllib.parse import unquote

from realtime.exceptions import RateExceeded, Transport
from realtime.ops.metrics import metrics
from realtime.transport.frontdoor import (
    REJECT_GRACE_SECONDS,
    FrontDoor,
    http_429,
    http_refusal,
    json_refusal,
    refusal_response,
    response_parts,
)
from realtime.transport.overload import overload
from realtime.transport.refused_websocket import (
    accept_key,
    chosen_subprotocol,
    refused_websocket_class,
    switching_protocols,
)


def shed_in_daphne(door: FrontDoor) -> bool:
    """Have daphne's HTTP requests meet ``door``'s :meth:`~FrontDoor.refusal_now` first.

    Returns whether daphne is installed (and so now sheds); the last door given wins.
    """
    try:
        from daphne import server as daphne_server  # type: ignore[import-untyped]
        from daphne.http_protocol import HTTPFactory  # type: ignore[import-untyped]
        from twisted.web.http import _GenericHTTPChannelProtocol
    except ImportError:  # another server: nothing to do
        return False
    request_class = shedding_request_class(door)
    channel_class = shedding_channel_class(door)

    class SheddingHTTPFactory(HTTPFactory):  # type: ignore[misc]
        """daphne's HTTP factory, whose connections and requests can be refused by Twisted."""

        def protocol(self) -> Any:
            # What Twisted's own HTTPFactory.protocol builds, with our channel.
            return _GenericHTTPChannelProtocol(channel_class())

        def buildProtocol(self, addr: Any) -> Any:
            if overload.descriptors_full():
                metrics.refused("connection", "descriptors")
                return refused_connection(self.server.server_name if self.server is not None else None)
            protocol = super().buildProtocol(addr)
            protocol.requestFactory = request_class
            return protocol

    daphne_server.HTTPFactory = SheddingHTTPFactory
    return True


# A connection refused while the process is short of file descriptors, in AppSync's shape.
TOO_MANY_CONNECTIONS = json_refusal(
    {
        "errors": [
            RateExceeded("Too many connections right now; retry with backoff.").to_error(Transport.HTTP)
        ]
    },
    [("Connection", "close")],
)


def refused_connection(server_name: str | None, clock: Any = None) -> Any:
    """A Twisted protocol that answers a connection's first request with 429 and closes it.

    For a connection accepted while the process holds its share of file
    descriptors (:meth:`Overload.descriptors_full
    <realtime.transport.overload.Overload.descriptors_full>`): the request is
    read before the answer, so the close that follows is a clean one; a client
    that sends nothing within :data:`~realtime.transport.frontdoor.REJECT_GRACE_SECONDS`
    is closed without one. A WebSocket client gets the 429 instead of its
    upgrade, and retries as after any refused handshake.
    """
    if clock is None:
        from twisted.internet import reactor as clock

    answer = http_429(*response_parts(TOO_MANY_CONNECTIONS, 1), leading=server_headers(server_name))
    return _refused_connection_class()(answer, clock)


@functools.cache
def _refused_connection_class() -> type[Any]:
    # Built once: a flood of connections gets one instance each, not a class each.
    from twisted.internet.protocol import Protocol

    # Twisted's protocol is only partly annotated: this subclass reads it as Any.
    protocol_base: Any = Protocol

    class RefusedConnection(protocol_base):  # type: ignore[misc]
        def __init__(self, answer: bytes, clock: Any) -> None:
            self.answer = answer
            self.clock = clock
            self.waiting: Any = None

        def connectionMade(self) -> None:
            self.waiting = self.clock.callLater(REJECT_GRACE_SECONDS, self.transport.loseConnection)

        def dataReceived(self, data: bytes) -> None:
            if self.waiting is None:
                return  # answered already; the rest of the request is dropped
            self.waiting.cancel()
            self.waiting = None
            self.transport.write(self.answer)
            self.transport.loseConnection()

        def connectionLost(self, reason: Any = None) -> None:
            if self.waiting is not None and self.waiting.active():
                self.waiting.cancel()
            self.waiting = None

    return RefusedConnection


def server_headers(server_name: str | None) -> list[tuple[bytes, bytes]]:
    """daphne's own headers on an answer it writes: ``date``, and ``server`` when it names itself."""
    headers = [(b"date", http_date())]
    if server_name:
        headers.append((b"server", server_name.encode()))
    return headers


# A request the channel answers without Twisted's parser: small, whole, plain.
MAX_FAST_REQUEST = 8192
FAST_VERSION = b"HTTP/1.1"
# Headers that change how the bytes that follow are read, or what happens
# after the answer: such a request goes the usual way. ``Connection:
# keep-alive`` (what browsers send) changes nothing in HTTP/1.1 and is let by.
FALL_BACK_HEADERS = frozenset({b"transfer-encoding", b"connection", b"upgrade", b"expect"})
KEEP_ALIVE = (b"connection", b"keep-alive")


def parse_plain_request(data: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]]] | None:
    """``(method, target, headers)`` of exactly one whole HTTP/1.1 request in ``data``, else ``None``.

    Only the plainest case: one request, its body complete (``Content-Length``,
    no more bytes after it), no header in :data:`FALL_BACK_HEADERS`. Anything else
    (a request in several reads, pipelining, chunked bodies, ``Connection:
    close``, HTTP/1.0, anything malformed) is ``None``: Twisted reads it as usual.
    Header names are lower-cased, values stripped.
    """
    head = _split_head(data)
    if head is None:
        return None
    (method, target), lines, head_end = head
    headers: list[tuple[bytes, bytes]] = []
    length = None
    for line in lines:
        name, colon, value = line.partition(b":")
        name = name.lower()
        value = value.strip()
        if not colon or not name or name != name.strip():
            return None
        if name in FALL_BACK_HEADERS and (name, value.lower()) != KEEP_ALIVE:
            return None
        if name == b"content-length":
            if length is not None or not value.isdigit():
                return None
            length = int(value)
        headers.append((name, value))
    if len(data) - head_end - 4 != (length or 0):
        return None
    return method, target, headers


# What daphne accepts in a header's name and value (daphne.utils; checked again here
# because an upgrade read by :func:`parse_upgrade_request` never meets daphne's request).
_HEADER_NAME = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
_INVALID_HEADER_VALUE_BYTES = frozenset(b"\x0b\x0c\x1c\x1d\x1e\x85")
# Headers that would make the request more than a handshake.
_NOT_A_HANDSHAKE = frozenset({b"content-length", b"transfer-encoding"})


def parse_upgrade_request(data: bytes) -> tuple[bytes, dict[bytes, bytes]] | None:
    """``(target, headers)`` of exactly one whole WebSocket upgrade request in ``data``, else ``None``.

    Only the plainest case, as daphne would read it: ``GET``, HTTP/1.1, ``Upgrade:
    websocket``, no body and nothing after the head, every header name a token and
    every value free of what daphne refuses, no header repeated or folded. Anything
    else is ``None``: Twisted and daphne read it as usual. Header names are
    lower-cased, values stripped of blanks.
    """
    head = _split_head(data) if data.startswith(b"GET ") else None
    if head is None:
        return None
    (_, target), lines, head_end = head
    if head_end + 4 != len(data):
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or _HEADER_NAME.fullmatch(name) is None:
            return None
        name = name.lower()
        value = value.strip(b" \t")
        if name in headers or name in _NOT_A_HANDSHAKE or _INVALID_HEADER_VALUE_BYTES.intersection(value):
            return None
        headers[name] = value
    if headers.get(b"upgrade", b"").lower() != b"websocket":
        return None
    return target, headers


def _split_head(data: bytes) -> tuple[tuple[bytes, bytes], list[bytes], int] | None:
    """``((method, target), header lines, where the head ends)`` of an HTTP/1.1 request whose head
    is whole in ``data`` and no longer than :data:`MAX_FAST_REQUEST` allows, else ``None``."""
    if len(data) > MAX_FAST_REQUEST:
        return None
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    lines = data[:head_end].split(b"\r\n")
    request_line = lines[0].split(b" ")
    if len(request_line) != 3 or request_line[2] != FAST_VERSION:
        return None
    return (request_line[0], request_line[1]), lines[1:], head_end


def hand_over(transport: Any, protocol: Any) -> None:
    """Give the connection to ``protocol``, as daphne does for a WebSocket it accepts."""
    from twisted.protocols.policies import ProtocolWrapper

    if isinstance(transport, ProtocolWrapper):  # TLS
        transport.wrappedProtocol = protocol
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)


def write_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to a plain TCP transport's socket at once when nothing is queued before it.

    Twisted's ``write`` queues the bytes, asks the loop to watch the socket for
    writability, and sends on a later turn of the loop: two more system calls
    and a turn per refusal. A 429 of a few hundred bytes fits in any socket
    buffer; whatever the socket does not take (or any error) goes the usual way.
    """
    sock = getattr(transport, "socket", None)
    queued = getattr(transport, "dataBuffer", b"?") or getattr(transport, "_tempDataBuffer", [b"?"])
    if sock is None or queued or getattr(transport, "TLS", False) or transport.disconnecting:
        transport.write(data)
        return
    try:
        sent = sock.send(data)
    except OSError:
        sent = 0  # EAGAIN, or a reset Twisted will see and report on its own turn
    if sent < len(data):
        transport.write(data[sent:])


_date: tuple[int, bytes] = (0, b"")


def http_date() -> bytes:
    """The ``Date`` header's value now (made once a second)."""
    global _date
    now = int(time.time())
    if _date[0] != now:
        from twisted.web.http import datetimeToString

        _date = (now, datetimeToString(now))  # type: ignore[no-untyped-call]
    return _date[1]


def shedding_channel_class(door: FrontDoor, clock: Any = None) -> type[Any]:
    """Twisted's ``HTTPChannel``, answering the front door's immediate refusals from the raw bytes.

    When a connection is between requests and one read holds exactly one whole
    plain request (:func:`parse_plain_request`) that the front door refuses at
    once, the 429 is written straight back: no Twisted request object, no
    header parsing line by line, no daphne request, no ASGI application. That is
    the refusal a storm makes by the thousand, on keep-alive connections.
    """
    from twisted.web import http

    # Twisted's channel is only partly annotated: this subclass reads it as Any.
    channel_base: Any = http.HTTPChannel
    refused_websocket = refused_websocket_class()

    class SheddingChannel(channel_base):  # type: ignore[misc]
        _peer: tuple[str, int] | None = None

        def dataReceived(self, data: bytes) -> None:
            if self._between_requests():
                if self._upgraded(data):
                    return
                answer = self._refusal(data)
                if answer is not None:
                    self.resetTimeout()
                    write_now(self.transport, answer)
                    return
            super().dataReceived(data)

        def _between_requests(self) -> bool:
            return bool(
                self.persistent
                and self.line_mode
                and not self.requests
                and not self._handlingRequest
                and not self._buffer
                and not self._dataBuffer
                and not self._busyReceiving
            )

        def _client(self) -> tuple[str, int]:
            if self._peer is None:
                peer = self.transport.getPeer()
                self._peer = (peer.host, peer.port) if hasattr(peer, "host") else ("", 0)
            return self._peer

        def _upgraded(self, data: bytes) -> bool:
            """Hand a whole WebSocket upgrade read at once (:func:`parse_upgrade_request`) to
            daphne's WebSocket protocol, or to the front door's refusal; whether it was.

            What daphne's request does with an upgrade (``WebRequest.process``), without
            Twisted's line-by-line parsing and its request object first: a connect
            storm's handshakes are nearly all such reads. The refusal is the one
            :meth:`SheddingRequest._refused_upgrade` makes of an upgrade Twisted parsed.
            """
            request = parse_upgrade_request(data)
            server = self.factory.server if self.factory is not None else None
            if request is None or server is None:
                return False
            target, headers = request
            path, _, query = target.partition(b"?")
            try:
                path_text = path.decode("ascii")
                query.decode("ascii")
            except UnicodeDecodeError:
                return False  # daphne answers 400
            transport = self.transport
            refused = _refused_protocol(
                door,
                refused_websocket,
                clock,
                headers,
                {
                    "type": "websocket",
                    "path": unquote(path_text),
                    "client": self._client(),
                    "headers": list(headers.items()),
                },
                server.server_name,
            )
            if refused is None:
                protocol = server.ws_factory.buildProtocol(transport.getPeer())
                if not protocol:
                    return False  # daphne answers 500
                protocol._raw_query_string = query
            else:
                protocol = refused
            # The connection is no longer HTTP: the channel's idle timeout goes, as
            # Twisted stops it for a request it hands over.
            if self.timeOut:
                self.setTimeout(None)
            hand_over(transport, protocol)
            if refused is None:
                protocol.dataReceived(data)
            return True

        def _refusal(self, data: bytes) -> bytes | None:
            request = parse_plain_request(data)
            if request is None:
                return None
            method, target, headers = request
            client = self._client()
            try:
                path = unquote(target.partition(b"?")[0].decode("ascii"))
            except UnicodeDecodeError:
                return None
            refusal = door.refusal_now(
                {
                    "type": "http",
                    "method": method.decode("ascii", "replace"),
                    "path": path,
                    "client": client,
                    "headers": headers,
                }
            )
            if refusal is None:
                return None
            gate, retry_after = refusal
            server = self.factory.server if self.factory is not None else None
            leading = server_headers(server.server_name if server is not None else None)
            answer, body_size = http_refusal(gate, retry_after, leading)
            if server is not None and server.action_logger:
                # daphne's access log line, as for any request it answers.
                server.log_action(
                    "http",
                    "complete",
                    {
                        "path": target.decode("ascii", "replace"),
                        "status": 429,
                        "method": method.decode("ascii", "replace"),
                        "client": "{}:{}".format(*client),
                        "time_taken": 0.0,
                        "size": body_size,
                    },
                )
            return answer

    return SheddingChannel


def shedding_request_class(door: FrontDoor, clock: Any = None) -> type[Any]:
    """daphne's ``WebRequest``, answering the front door's immediate refusals itself.

    ``clock``: what a refused WebSocket's timers run on (Twisted's reactor by default).
    """
    from daphne.http_protocol import WebRequest
    from twisted.web import http

    request_write: Any = http.Request.write
    refused_websocket = refused_websocket_class()

    class SheddingRequest(WebRequest):  # type: ignore[misc]
        def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
            # Called by Twisted once the whole request (body included) is read,
            # before it parses anything of it for daphne.
            if self.requestHeaders.hasHeader(b"upgrade"):
                if not self._refused_upgrade(command, path):
                    super().requestReceived(command, path, version)
                return
            refusal = door.refusal_now(self._scope(command, path))
            if refusal is None:
                super().requestReceived(command, path, version)
                return
            gate, retry_after = refusal
            self.request_start = time.time()
            self.method, self.uri, self.clientproto = command, path, version
            self.path = path.partition(b"?")[0]
            headers, body = refusal_response(gate, retry_after)
            self.setResponseCode(429, b"Too Many Requests")
            for name, value in headers:
                self.responseHeaders.addRawHeader(name, value)
            if self.server.server_name:
                self.responseHeaders.setRawHeaders(b"server", [self.server.server_name.encode()])
            request_write(self, body)
            self.finish()
            if self.server.action_logger:
                self.server.log_action(
                    "http",
                    "complete",
                    {
                        "path": path.decode("ascii", "replace"),
                        "status": 429,
                        "method": command.decode("ascii", "replace"),
                        "client": f"{self.client.host}:{self.client.port}"
                        if hasattr(self.client, "host")
                        else None,
                        "time_taken": self.duration(),
                        "size": self.sentLength,
                    },
                )

        def _refused_upgrade(self, command: bytes, path: bytes) -> bool:
            """Refuse a WebSocket upgrade the front door refuses at once, as it would; whether it did.

            Only a well-formed RFC 6455 handshake is answered here; anything
            else goes on to daphne and autobahn, which decide and explain.
            """
            if command != b"GET":
                return False
            raw = self.requestHeaders.getRawHeaders
            headers = {
                name: (raw(name) or [b""])[0]
                for name in (b"upgrade", b"sec-websocket-key", b"sec-websocket-version")
            }
            offered = raw(b"sec-websocket-protocol")
            if offered:
                headers[b"sec-websocket-protocol"] = b",".join(offered)
            if headers[b"upgrade"].lower() != b"websocket":
                return False
            protocol = _refused_protocol(
                door,
                refused_websocket,
                clock,
                headers,
                self._scope(command, path, "websocket"),
                self.server.server_name if self.server is not None else None,
            )
            if protocol is None:
                return False
            # Hand the connection over, as daphne does for a WebSocket it accepts.
            request: Any = self  # Twisted's Request leaves its transport unannotated
            transport = request.transport
            request.transport = None
            hand_over(transport, protocol)
            self.server.protocol_disconnected(self)
            self.channel._networkProducer.resumeProducing()
            return True

        def _scope(self, command: bytes, path: bytes, kind: str = "http") -> dict[str, Any]:
            """As much of the ASGI scope as the front door reads: type, method, path, client, headers."""
            client = self.client
            return {
                "type": kind,
                "method": command.decode("ascii", "replace"),
                "path": unquote(path.partition(b"?")[0].decode("ascii", "replace")),
                "client": (client.host, client.port) if hasattr(client, "host") else None,
                "headers": [
                    (name.lower(), value)
                    for name, values in self.requestHeaders.getAllRawHeaders()
                    for value in values
                ],
            }

    return SheddingRequest


def _refused_protocol(
    door: FrontDoor,
    refused_websocket: Any,
    clock: Any,
    headers: dict[bytes, bytes],
    scope: dict[str, Any],
    server_name: str | None,
) -> Any:
    """The protocol that refuses an upgrade the front door refuses at once, else ``None``.

    ``headers``: the request's ``sec-websocket-*`` headers, names lower-cased.
    Only a well-formed RFC 6455 handshake (version 13, a valid key) is refused
    here; anything else goes on to daphne and autobahn, which decide and explain.
    """
    if headers.get(b"sec-websocket-version", b"").strip() != b"13":
        return None
    accept = accept_key(headers.get(b"sec-websocket-key", b"").strip())
    if accept is None or door.refusal_now(scope) is None:
        return None
    offered = headers.get(b"sec-websocket-protocol")
    subprotocol = chosen_subprotocol([offered] if offered is not None else [])
    if clock is None:
        from twisted.internet import reactor

        clock = reactor
    return refused_websocket(switching_protocols(accept, subprotocol, server_name), clock)
