"""A minimal, fast WebSocket client (RFC 6455) on an asyncio ``Protocol``.

The load generator must stay cheaper per frame than the fastest server it
measures, on one core, while holding thousands of sockets. The ``websockets``
library's asyncio client costs tens of microseconds per received frame (parser
generator, assembler queue, one ``await recv()`` per frame); at 100k frames/s
that alone would saturate the load generator's core and hide the ceiling. This
client parses frames straight out of ``data_received`` and hands each text
payload (``bytes``) to a callback, so the per-frame cost is a few slices.

It uses ``websockets``' C ``apply_mask`` for client-to-server masking (frames
must be masked, RFC 6455 §5.3) and speaks only what the benchmark needs: text
frames (fragmented ones too), ping → pong, close.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Callable, Sequence
from time import perf_counter

try:  # the C extension ships with websockets; fall back to pure Python
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover

    def _apply_mask(data: bytes, mask: bytes) -> bytes:
        n = len(data)
        key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
        return (int.from_bytes(data, "little") ^ key).to_bytes(n, "little")


_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_PACK_H = struct.Struct("!H").pack
_PACK_Q = struct.Struct("!Q").pack
_UNPACK_H = struct.Struct("!H").unpack_from
_UNPACK_Q = struct.Struct("!Q").unpack_from

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10


class HandshakeError(Exception):
    pass


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    mask = os.urandom(4)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + _PACK_H(n)
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + _PACK_Q(n)
    return header + mask + (_apply_mask(payload, mask) if n else b"")


class WSClient(asyncio.Protocol):
    """One client connection. ``on_text(payload, now)`` sees every text message.

    ``now`` is ``time.perf_counter()`` taken once per ``data_received`` call: every
    frame of one read arrived at the same moment, and reading the clock once
    per read keeps the per-frame cost down.
    """

    __slots__ = (
        "transport",
        "on_text",
        "on_close",
        "_buf",
        "_upgraded",
        "_request",
        "_accept",
        "_fragments",
        "handshake",
        "closed",
        "_loop",
    )

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        subprotocols: Sequence[str] = (),
        on_text: Callable[[bytes, float], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        key = base64.b64encode(os.urandom(16))
        self._accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key.decode()}",
            "Sec-WebSocket-Version: 13",
        ]
        if subprotocols:
            lines.append("Sec-WebSocket-Protocol: " + ", ".join(subprotocols))
        self._request = ("\r\n".join(lines) + "\r\n\r\n").encode()
        self.on_text = on_text
        self.on_close = on_close
        self._buf = b""
        self._upgraded = False
        self._fragments: list[bytes] | None = None
        self.transport: asyncio.Transport | None = None
        self.handshake: asyncio.Future[None] = self._loop.create_future()
        self.closed = False

    # -- asyncio.Protocol --------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.write(self._request)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.handshake.done():
            self.handshake.set_exception(HandshakeError(f"connection lost during handshake: {exc}"))
        if self.on_close is not None:
            self.on_close()

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        if not self._upgraded:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                self._buf = buf
                return
            head = buf[:end]
            buf = buf[end + 4 :]
            status = head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" " or self._accept not in head:
                self.handshake.set_exception(HandshakeError(head.decode("latin-1")[:300]))
                self.transport.close()  # type: ignore[union-attr]
                return
            self._upgraded = True
            self.handshake.set_result(None)
        now = perf_counter()
        on_text = self.on_text
        pos = 0
        size = len(buf)
        while size - pos >= 2:
            b0 = buf[pos]
            n = buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                if size - pos < 4:
                    break
                n = _UNPACK_H(buf, start)[0]
                start += 2
            elif n == 127:
                if size - pos < 10:
                    break
                n = _UNPACK_Q(buf, start)[0]
                start += 8
            end = start + n
            if end > size:
                break
            opcode = b0 & 0x0F
            payload = buf[start:end]
            pos = end
            if opcode == OP_TEXT:
                if b0 & 0x80:
                    if on_text is not None:
                        on_text(payload, now)
                else:
                    self._fragments = [payload]
            elif opcode == OP_CONT and self._fragments is not None:
                self._fragments.append(payload)
                if b0 & 0x80:
                    message = b"".join(self._fragments)
                    self._fragments = None
                    if on_text is not None:
                        on_text(message, now)
            elif opcode == OP_PING:
                self.transport.write(encode_frame(OP_PONG, payload))  # type: ignore[union-attr]
            elif opcode == OP_CLOSE:
                if not self.closed:
                    self.closed = True
                    self.transport.write(encode_frame(OP_CLOSE, payload[:2]))  # type: ignore[union-attr]
                    self.transport.close()  # type: ignore[union-attr]
        self._buf = buf[pos:] if pos < size else b""

    # -- API -------------------------------------------------------------------

    def send_text(self, text: str | bytes) -> None:
        if self.closed or self.transport is None:
            return
        data = text.encode() if isinstance(text, str) else text
        self.transport.write(encode_frame(OP_TEXT, data))

    def close(self) -> None:
        """Send a normal close and drop the socket without waiting for the echo."""
        if self.transport is None or self.closed:
            return
        self.closed = True
        try:
            self.transport.write(encode_frame(OP_CLOSE, _PACK_H(1000)))
        finally:
            self.transport.close()

    def abort(self) -> None:
        if self.transport is not None:
            self.closed = True
            self.transport.abort()


async def connect(
    host: str,
    port: int,
    path: str,
    subprotocols: Sequence[str] = (),
    on_text: Callable[[bytes, float], None] | None = None,
    wait_s: float = 30.0,
) -> WSClient:
    """Open a connection and complete the upgrade within ``wait_s`` seconds."""
    loop = asyncio.get_running_loop()
    _, client = await asyncio.wait_for(
        loop.create_connection(lambda: WSClient(host, port, path, subprotocols, on_text), host, port),
        wait_s,
    )
    await asyncio.wait_for(asyncio.shield(client.handshake), wait_s)
    return client
