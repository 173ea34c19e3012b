"""A connection's bounded outbound queue and the one task that drains it (DESIGN §5).

Every frame a connection sends goes through its outbox, so acks, errors and
``data`` frames keep their order, and a close is sent only after the frames
queued before it. Fan-out only appends to a deque: no task and no layer message
per delivery. A subscriber that falls more than ``limit`` frames behind is
closed instead of growing memory or slowing the others.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .protocol import CloseCode

try:  # daphne: autobahn raises this for a frame sent after the peer's close frame
    from autobahn.exception import Disconnected as _ServerDisconnected
except ImportError:  # pragma: no cover - served by another ASGI server
    _ServerDisconnected = OSError  # type: ignore[assignment,misc]

logger = logging.getLogger(__name__)

# What send() raises when the peer has already gone: the ASGI spec asks servers
# for an OSError subclass; daphne lets autobahn's Disconnected through.
PEER_GONE: tuple[type[Exception], ...] = (OSError, _ServerDisconnected)

SLOW_CONSUMER_REASON = "outbound buffer full: the client is not reading fast enough"

AsgiSend = Callable[[dict[str, Any]], Awaitable[None]]


def _daphne_protocol(send: AsgiSend) -> Any:
    """The autobahn protocol behind daphne's ``send`` (``partial(Server.handle_reply, protocol)``)."""
    if isinstance(send, functools.partial) and getattr(send.func, "__name__", None) == "handle_reply":
        protocol = send.args[0] if send.args else None
        if callable(getattr(protocol, "sendCloseFrame", None)):
            return protocol
    return None


class _WriteFlow:
    """A Twisted push producer on daphne's transport: Twisted pauses it once the socket's
    write buffer passes ``bufferSize`` (64 KiB) and resumes it when that has drained."""

    __slots__ = ("writable",)

    def __init__(self) -> None:
        self.writable = asyncio.Event()
        self.writable.set()

    def pauseProducing(self) -> None:
        self.writable.clear()

    def resumeProducing(self) -> None:
        self.writable.set()

    def stopProducing(self) -> None:
        self.writable.set()


def _write_flow(send: AsgiSend) -> _WriteFlow | None:
    """Backpressure under daphne, whose ``send`` never waits (Twisted buffers without bound)."""
    protocol = _daphne_protocol(send)
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return None
    flow = _WriteFlow()
    # daphne leaves the HTTP channel registered as the producer after the upgrade.
    transport.unregisterProducer()
    transport.registerProducer(flow, True)
    return flow


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str = ""


class Outbox:
    """Frames waiting for one socket, written in order by a single task."""

    __slots__ = ("_send", "_frames", "_limit", "_wakeup", "_on_overflow", "closed", "task", "_flow")

    def __init__(self, send: AsgiSend, *, limit: int, on_overflow: Callable[[], None]) -> None:
        self._send = send
        self._frames: deque[str | Close] = deque()
        self._limit = limit
        self._wakeup = asyncio.Event()
        self._on_overflow = on_overflow
        # Set once a close is queued or the peer is gone: nothing more is accepted.
        self.closed = False
        self.task: asyncio.Task[None] | None = None
        self._flow: _WriteFlow | None = None

    def start(self) -> None:
        self._flow = _write_flow(self._send)
        self.task = asyncio.get_running_loop().create_task(self._drain())

    def offer(self, frame: str) -> bool:
        """Queue one text frame; never blocks.

        Returns ``False`` when the frame was not queued: the outbox is closed,
        or this frame overflowed it, which drops the backlog and calls
        ``on_overflow`` once.
        """
        if self.closed:
            return False
        if len(self._frames) >= self._limit:
            self.close_now(CloseCode.SLOW_CONSUMER, SLOW_CONSUMER_REASON)
            self._on_overflow()
            return False
        self._frames.append(frame)
        self._wakeup.set()
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Send a close after what is queued; accept nothing afterwards."""
        if self.closed:
            return
        self.closed = True
        self._frames.append(Close(code, reason))
        self._wakeup.set()

    def close_now(self, code: int, reason: str = "") -> None:
        """Drop the backlog and close at once (a subscriber too slow to keep)."""
        self.closed = True
        self._frames.clear()
        self._frames.append(Close(code, reason))
        self._wakeup.set()
        if self._flow is not None:
            self._flow.writable.set()  # the close goes out even to a socket that stopped reading

    def __len__(self) -> int:
        return len(self._frames)

    async def _drain(self) -> None:
        frames = self._frames
        send = self._send
        flow = self._flow
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            try:
                while frames:
                    if flow is not None and not flow.writable.is_set():
                        # The socket is not draining: frames wait here, and past the
                        # limit offer() closes the connection.
                        await flow.writable.wait()
                        continue
                    frame = frames.popleft()
                    if frame.__class__ is str:
                        await send({"type": "websocket.send", "text": frame})
                    else:
                        assert isinstance(frame, Close)
                        # int(): daphne (autobahn) refuses a close code whose type is
                        # not exactly int, and CloseCode is an IntEnum.
                        code = int(frame.code)
                        protocol = _daphne_protocol(send)
                        if protocol is None:
                            await send({"type": "websocket.close", "code": code, "reason": frame.reason})
                        else:
                            # daphne closes through autobahn's sendClose(), which refuses
                            # every code but 1000 and 3000-4999 (1008 raised, and no close
                            # went out) and drops the reason (django/daphne#374): write the
                            # close frame RFC 6455 allows ourselves.
                            reason = frame.reason.encode()[:123].decode(errors="ignore").encode()
                            protocol.sendCloseFrame(code=code, reasonUtf8=reason or None)
                        return
            except PEER_GONE:
                # The client closed while frames were queued (its close crossed our
                # reply); websocket_disconnect follows. Routine: no traceback.
                logger.debug("websocket peer gone; dropping the connection's outbox")
                self.closed = True
                frames.clear()
                return
            except Exception:
                # The server refused a frame (the peer is gone, or a bug): stop
                # accepting frames rather than queue them for a dead socket.
                logger.warning("websocket send failed; dropping the connection's outbox", exc_info=True)
                self.closed = True
                frames.clear()
                return

    def stop(self) -> None:
        """The peer is gone: drop everything and end the task."""
        self.closed = True
        self._frames.clear()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
