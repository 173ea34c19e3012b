"""A WebSocket connect refused by Twisted itself, in the front door's shape (daphne only).

The front door refuses a connect as ``realtime`` refuses one (PROTOCOL §12,
"Connect refusal"): the upgrade is accepted, the client's first frame (its
``connection_init``) is answered with ``connection_error``
(``LimitExceededError``, ``errorCode`` 429), sent anyway after
:data:`~realtime.transport.frontdoor.REJECT_GRACE_SECONDS`, and the socket
closes with 1000. Amplify reads that as a refusal to report, where an HTTP
error on the upgrade makes it retry the handshake six times (PROTOCOL §10).

Through daphne's ASGI path that shape costs a full autobahn handshake and an
application instance per refused connect. :class:`RefusedWebSocket` writes
the same bytes from a small Twisted protocol that the upgrade's transport is
handed to (:mod:`realtime.transport.daphne_door`), so a connect storm is
refused without daphne building anything. The pure part (the handshake's
answer and the frames) is here too, for the tests to read.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
from typing import Any

from realtime.core import protocol as wire
from realtime.core.protocol import CloseCode
from realtime.core.wsframe import text_frame
from realtime.exceptions import Transport
from realtime.transport.frontdoor import CONNECT_REFUSED, REJECT_GRACE_SECONDS
from realtime.transport.handshake import SUBPROTOCOL

# RFC 6455 §1.3: the GUID a server appends to the client's key.
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# After its close frame, how long the server waits for the client's before dropping the TCP connection.
CLOSE_GRACE_SECONDS = 2.0


def accept_key(key: bytes) -> bytes | None:
    """``Sec-WebSocket-Accept`` for a client's ``Sec-WebSocket-Key``; ``None`` if the key is not one
    (RFC 6455 §4.1: 16 random bytes, base64)."""
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except (binascii.Error, ValueError):
        return None
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def switching_protocols(accept: bytes, subprotocol: str | None, server_name: str | None) -> bytes:
    """The 101 answer to an upgrade, with the subprotocol chosen (the front door's: AppSync's, if offered)."""
    lines = [b"HTTP/1.1 101 Switching Protocols"]
    if server_name:
        lines.append(b"Server: " + server_name.encode())
    lines += [b"Upgrade: WebSocket", b"Connection: Upgrade"]
    if subprotocol:
        lines.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode())
    lines.append(b"Sec-WebSocket-Accept: " + accept)
    return b"\r\n".join(lines) + b"\r\n\r\n"


def close_frame(code: int) -> bytes:
    """An unmasked close frame carrying ``code`` and no reason."""
    return bytes((0x88, 2)) + code.to_bytes(2, "big")


@functools.cache
def refusal_frames() -> bytes:
    """``connection_error`` (``LimitExceededError``), then a close frame (1000), as the front door sends."""
    error = wire.connection_error([CONNECT_REFUSED.to_error(Transport.WEBSOCKET, with_code=True)])
    return text_frame(error.encode()) + close_frame(int(CloseCode.NORMAL))


def chosen_subprotocol(offered: list[bytes]) -> str | None:
    """AppSync's subprotocol when the client offered it among ``Sec-WebSocket-Protocol`` values."""
    parts = {part.strip() for value in offered for part in value.split(b",")}
    return SUBPROTOCOL if SUBPROTOCOL.encode() in parts else None


def refused_websocket_class() -> type[Any]:
    """The Twisted protocol of a refused connect (Twisted is imported only under daphne)."""
    from twisted.internet import protocol as twisted_protocol

    protocol_base: Any = twisted_protocol.Protocol

    class RefusedWebSocket(protocol_base):  # type: ignore[misc]
        """Writes the 101 on connection, the refusal on the client's first bytes (or after the
        grace), then drops the connection on the client's next bytes (its close) or after a grace."""

        def __init__(self, handshake: bytes, clock: Any) -> None:
            self.handshake = handshake
            self.clock = clock
            self.refused = False
            self._timer: Any = None

        def connectionMade(self) -> None:
            self.transport.write(self.handshake)
            self._timer = self.clock.callLater(REJECT_GRACE_SECONDS, self._refuse)

        def dataReceived(self, data: bytes) -> None:
            if self.refused:
                self._drop()  # the client's close frame (or anything else): done
            else:
                self._refuse()

        def _refuse(self) -> None:
            self._cancel()
            self.refused = True
            self.transport.write(refusal_frames())
            self._timer = self.clock.callLater(CLOSE_GRACE_SECONDS, self._drop)

        def _drop(self) -> None:
            self._cancel()
            self.transport.loseConnection()

        def _cancel(self) -> None:
            if self._timer is not None and self._timer.active():
                self._timer.cancel()
            self._timer = None

        def connectionLost(self, reason: Any = None) -> None:
            self._cancel()

    return RefusedWebSocket
