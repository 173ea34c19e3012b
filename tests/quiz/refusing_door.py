"""A TCP proxy in front of a test server whose door refuses the first WebSocket connects.

Each refusal takes one of the shapes a phone meets in a connect storm: the front
door's (``connection_error`` ``LimitExceededError``, then close 1000, the bytes
``realtime.transport.refused_websocket`` writes), an HTTP 429 with ``Retry-After``
on the upgrade, or a connection reset (a process going away). Everything else,
HTTP keep-alive connections and the later connects, is piped to the server from
the client's own loopback address (the server keys its rates on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator

from realtime.transport.handshake import SUBPROTOCOL
from realtime.transport.refused_websocket import accept_key, refusal_frames, switching_protocols

REFUSE = "connection_error"
HTTP_429 = "http 429"
RESET = "reset"
RETRY_AFTER = 1


class RefusingDoor:
    """Listens on ``port``; refuses the first connects to ``/event/realtime`` in the order of ``shapes``."""

    def __init__(self, upstream_port: int, shapes: list[str]) -> None:
        self.upstream_port = upstream_port
        self.shapes = list(shapes)
        self.refused: Counter[str] = Counter()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[RefusingDoor]:
        self._thread.start()
        self._ready.wait(10)
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            if head.startswith(b"GET /event/realtime") and self.shapes:
                shape = self.shapes.pop(0)
                self.refused[shape] += 1
                await self._refuse(shape, head, reader, writer)
                return
            await self._pipe_to_server(head, reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            writer.close()

    async def _refuse(
        self, shape: str, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if shape == RESET:
            # SO_LINGER 0: the close sends RST, as a process killed under its connections does.
            writer.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
            )
            writer.transport.abort()
            return
        if shape == HTTP_429:
            writer.write(
                b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: %d\r\n"
                b"Content-Length: 0\r\nConnection: close\r\n\r\n" % RETRY_AFTER
            )
        else:
            key = _header(head, b"sec-websocket-key")
            writer.write(switching_protocols(accept_key(key) or b"", SUBPROTOCOL, None))
            await asyncio.wait_for(reader.read(65536), 5)  # the client's connection_init
            writer.write(refusal_frames())
            await writer.drain()
            await asyncio.wait_for(reader.read(65536), 5)  # its close frame
        await writer.drain()
        writer.close()

    async def _pipe_to_server(
        self, head: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        client_ip = writer.get_extra_info("peername")[0]
        up_reader, up_writer = await asyncio.open_connection(
            "127.0.0.1", self.upstream_port, local_addr=(client_ip, 0)
        )
        up_writer.write(head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while data := await source.read(65536):
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


def _header(head: bytes, name: bytes) -> bytes:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return b""
