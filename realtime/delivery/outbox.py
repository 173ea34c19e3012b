"""A connection's bounded outbound queue, written without a task per connection (DESIGN §5).

Every frame a connection sends goes through its outbox, so acks, errors and
``data`` frames keep their order, and a close is sent only after the frames
queued before it. Fan-out only appends to a list and, once per loop pass,
schedules a flush of that connection (the flushes of a pass run from one loop
callback): no layer message and no task per delivery, and no task at all for an
idle connection. A subscriber that falls
more than ``limit`` frames behind is closed instead of growing memory or
slowing the others.

Under daphne and uvicorn the flush writes the frames' bytes straight to the
connection's transport (:mod:`realtime.delivery.direct`): everything queued in
one write, the ``data`` frames as the hub built them, once per event. Under any
other server, or with ``REALTIME["DIRECT_WRITES"]`` off, it calls the server's
``send`` per frame and steps the coroutine by hand: daphne's ``send`` never
suspends and uvicorn's only when the socket's write buffer is over its
high-water mark, so the frame is written at once. Only a ``send`` that really
suspends, or a socket that stopped draining, starts a task, which writes the
rest in order and ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import types
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass
from typing import Any, cast

from realtime.core.protocol import CloseCode
from realtime.core.wsframe import text_frame
from realtime.delivery.direct import (
    GONE,
    WAIT,
    DirectWriter,
    PeerGone,
    WriteFlow,
    daphne_protocol,
    direct_writer,
    write_flow,
)
from realtime.delivery.flushes import FlushQueue, flush_queue

logger = logging.getLogger(__name__)

# What send() raises when the peer has already gone: the ASGI spec asks servers
# for an OSError subclass; daphne lets autobahn's Disconnected through.
PEER_GONE: tuple[type[Exception], ...] = (OSError,)
try:  # daphne: autobahn raises this for a frame sent after the peer's close frame
    from autobahn.exception import Disconnected
except ImportError:  # pragma: no cover - served by another ASGI server
    pass
else:
    PEER_GONE += (Disconnected,)
try:  # uvicorn's websockets implementation: a drain on a socket that died
    from websockets.exceptions import ConnectionClosed
except ImportError:  # pragma: no cover - served by another ASGI server
    pass
else:
    PEER_GONE += (ConnectionClosed,)

SLOW_CONSUMER_REASON = "outbound buffer full: the client is not reading fast enough"

# The server's ``send``: an async function, whose coroutine the flush steps by hand.
AsgiSend = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


# Bytes written to a transport in one go before the outbox looks at its
# backpressure again (Twisted's bufferSize; asyncio's default high-water mark).
WRITE_CHUNK = 64 * 1024


def _step(coro: Coroutine[Any, Any, None]) -> _Suspended | None:
    """Run ``coro`` until it finishes (``None``) or suspends (a :class:`_Suspended`)."""
    try:
        waiting_for = coro.send(None)
    except StopIteration:
        return None
    return _Suspended(coro, waiting_for)


class _Suspended:
    """A coroutine stepped by hand that suspended: awaiting this finishes it."""

    __slots__ = ("coro", "waiting_for")

    def __init__(self, coro: Coroutine[Any, Any, None], waiting_for: Any) -> None:
        self.coro = coro
        self.waiting_for = waiting_for

    @types.coroutine
    def finish(self) -> Generator[Any, None, None]:
        # Hand the awaiting task what the coroutine suspended on (a future, or
        # None for a bare yield), exactly as if the task had stepped it itself;
        # resume the coroutine only once that is done.
        try:
            yield self.waiting_for
        except BaseException:
            self.coro.close()
            raise
        yield from self.coro


@dataclass(frozen=True, slots=True)
class Close:
    code: int
    reason: str = ""


class Outbox:
    """Frames waiting for one socket, written in order."""

    __slots__ = (
        "_send",
        "_frames",
        "_limit",
        "_on_overflow",
        "closed",
        "task",
        "_flow",
        "_direct",
        "wire",
        "_waiting",
        "_loop",
        "_scheduled",
        "_context",
        "_flushes",
    )

    def __init__(
        self, send: AsgiSend, *, limit: int, on_overflow: Callable[[], None], direct: bool = True
    ) -> None:
        self._send = send
        # Text frames, or whole WebSocket frames as bytes once ``wire`` is set. A
        # list, emptied with clear() once written: an idle connection keeps 56
        # bytes, where a deque keeps a 600-byte block, and in steady fan-out (a
        # frame or two per flush) a deque's block went to malloc and back on
        # every event.
        self._frames: list[str | bytes | Close] = []
        self._limit = limit
        self._on_overflow = on_overflow
        # Set once a close is queued or the peer is gone: nothing more is accepted.
        self.closed = False
        # The task writing frames while a send is suspended or the socket is paused.
        self.task: asyncio.Task[None] | None = None
        self._flow: WriteFlow | None = None
        # Whether start() may look for a direct writer (False: always through send).
        self._direct: DirectWriter | bool | None = direct
        # Set by start() when frames go to the transport as bytes: the hub then
        # offers pre-built frames (bytes) instead of text.
        self.wire = False
        # The writing task is waiting for the transport to drain (close_now may cancel it).
        self._waiting = False
        # Set by start(): frames offered before the socket is accepted wait for it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scheduled = False
        self._context: contextvars.Context | None = None
        self._flushes: FlushQueue | None = None

    def start(self) -> None:
        """The socket is accepted: write what is queued and what comes."""
        self._flow = write_flow(self._send)
        self._direct = direct_writer(self._send, self._flow) if self._direct else None
        self.wire = self._direct is not None
        self._loop = asyncio.get_running_loop()
        # Flushes run in the connection's own context (its connection id for log
        # lines), not in that of the publisher whose offer() scheduled them.
        self._context = contextvars.copy_context()
        self._flushes = flush_queue(self._loop)
        self._schedule()

    @property
    def server(self) -> str:
        """Which direct writer the outbox uses (``"asgi"``: the server's ``send``)."""
        return self._direct.server if isinstance(self._direct, DirectWriter) else "asgi"

    def offer(self, frame: str | bytes) -> bool:
        """Queue one frame: text, or a whole WebSocket frame's bytes when :attr:`wire` is set; never blocks.

        Returns ``False`` when the frame was not queued: the outbox is closed,
        or this frame overflowed it, which drops the backlog and calls
        ``on_overflow`` once.
        """
        if self.closed:
            return False
        frames = self._frames
        if len(frames) >= self._limit:
            self.close_now(CloseCode.SLOW_CONSUMER, SLOW_CONSUMER_REASON)
            self._on_overflow()
            return False
        frames.append(frame)
        if not self._scheduled:
            self._schedule()
        return True

    def close(self, code: int, reason: str = "") -> None:
        """Send a close after what is queued; accept nothing afterwards."""
        if self.closed:
            return
        self.closed = True
        self._frames.append(Close(code, reason))
        self._schedule()

    def close_now(self, code: int, reason: str = "") -> None:
        """Drop the backlog and close at once (a subscriber too slow to keep)."""
        self.closed = True
        # The same list, emptied: a writing task holds it.
        frames = self._frames
        frames.clear()
        frames.append(Close(code, reason))
        if self._flow is not None:
            self._flow.resumeProducing()  # the close goes out even to a socket that stopped reading
        if self._waiting and self.task is not None:
            # The writer waits for a socket that is not draining: the close does not.
            self.task.cancel()
            self.task = None
            self._waiting = False
        self._schedule()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def idle(self) -> bool:
        """Nothing queued, scheduled or being written."""
        return not self._frames and not self._scheduled and self.task is None

    def _schedule(self) -> None:
        # One flush per loop pass however many frames a burst offers; none while
        # a task is writing (it takes the new frames in order). The flushes of all
        # outboxes of a pass run from one loop callback (realtime.delivery.flushes).
        if self._flushes is None or self._scheduled or self.task is not None or not self._frames:
            return
        self._scheduled = True
        self._flushes.add(self._flush, cast(contextvars.Context, self._context))

    def _flush(self) -> None:
        self._scheduled = False
        if self.task is not None:
            return
        try:
            if self._direct is None:
                self._flush_send()
            else:
                self._flush_direct(cast(DirectWriter, self._direct))
        except Exception as error:
            self._failed(error)

    def _flush_send(self) -> None:
        frames = self._frames
        flow = self._flow
        while frames:
            if (flow is not None and flow.paused) or self._close_needs_task():
                # The socket is not draining: frames wait for it in a task, and
                # past the limit offer() closes the connection.
                self._write_in_task(None)
                return
            suspended = self._write_one(frames.pop(0))
            if suspended is not None:
                self._write_in_task(suspended)
                return

    def _flush_direct(self, writer: DirectWriter) -> None:
        frames = self._frames
        while frames:
            if frames[0].__class__ is Close:
                if self._close_needs_task():
                    self._write_in_task(None)
                    return
                self._send_close(cast(Close, frames.pop(0)))
                continue
            state = writer.state()
            if state == WAIT:
                self._write_in_task(None)
                return
            if state == GONE:
                raise PeerGone
            writer.write(self._take_wire())

    def _take_wire(self) -> bytes:
        """The queued frames up to the next close as one run of bytes (at most about WRITE_CHUNK)."""
        frames = self._frames
        chunks: list[bytes] = []
        size = 0
        for frame in frames:
            if frame.__class__ is Close or size >= WRITE_CHUNK:
                break
            # Acks, errors and keep-alives are offered as text by the connection.
            chunk = cast(bytes, frame) if frame.__class__ is bytes else text_frame(cast(str, frame).encode())
            chunks.append(chunk)
            size += len(chunk)
        del frames[: len(chunks)]
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def _close_needs_task(self) -> bool:
        """Whether the next frame is a close that only a task may send.

        Servers other than daphne close through ``send``, which may wait for the
        closing handshake under ``asyncio.timeout()``: that needs a current task,
        and a flush runs as a plain callback.
        """
        frames = self._frames
        return frames[0].__class__ is Close and daphne_protocol(self._send) is None

    def _write_in_task(self, suspended: _Suspended | None) -> None:
        assert self._loop is not None
        write = self._write_send(suspended) if self._direct is None else self._write_direct(suspended)
        self.task = self._loop.create_task(write, context=self._context)

    async def _write_send(self, suspended: _Suspended | None) -> None:
        frames = self._frames
        flow = self._flow
        try:
            if suspended is not None:
                await suspended.finish()
            while frames:
                if flow is not None and flow.paused:
                    await flow.drained()
                    continue
                suspended = self._write_one(frames.pop(0))
                if suspended is not None:
                    await suspended.finish()
        except Exception as error:
            self._failed(error)
        finally:
            self._task_done()

    async def _write_direct(self, suspended: _Suspended | None) -> None:
        frames = self._frames
        writer = cast(DirectWriter, self._direct)
        try:
            if suspended is not None:
                await suspended.finish()
            while frames:
                if frames[0].__class__ is Close:
                    suspended = self._send_close(cast(Close, frames.pop(0)))
                    if suspended is not None:
                        await suspended.finish()
                    continue
                state = writer.state()
                if state == WAIT:
                    self._waiting = True
                    try:
                        await writer.writable()
                    finally:
                        self._waiting = False
                    continue
                if state == GONE:
                    raise PeerGone
                writer.write(self._take_wire())
        except Exception as error:
            self._failed(error)
        finally:
            self._task_done()

    def _task_done(self) -> None:
        # No await between the last frame and this: an offer() made while the
        # task ran was written by it, and the next one schedules a flush. A task
        # that close_now() cancelled is no longer the outbox's.
        if self.task is asyncio.current_task():
            self.task = None

    def _write_one(self, frame: str | bytes | Close) -> _Suspended | None:
        """Write one queued frame through ``send``; what is left to await if it suspended."""
        if frame.__class__ is str:
            return _step(self._send({"type": "websocket.send", "text": frame}))
        # The queue holds only text and Close here (bytes only once ``wire`` is set).
        return self._send_close(cast(Close, frame))

    def _send_close(self, frame: Close) -> _Suspended | None:
        # int(): daphne (autobahn) refuses a close code whose type is not exactly
        # int, and CloseCode is an IntEnum.
        code = int(frame.code)
        protocol = daphne_protocol(self._send)
        if protocol is None:
            return _step(self._send({"type": "websocket.close", "code": code, "reason": frame.reason}))
        # daphne closes through autobahn's sendClose(), which refuses every code but
        # 1000 and 3000-4999 (1008 raised, and no close went out) and drops the
        # reason (django/daphne#374): write the close frame RFC 6455 allows ourselves.
        reason = frame.reason.encode()[:123].decode(errors="ignore").encode()
        protocol.sendCloseFrame(code=code, reasonUtf8=reason or None)
        return None

    def _failed(self, error: Exception) -> None:
        self.closed = True
        self._frames.clear()
        if isinstance(error, PEER_GONE):
            # The client closed while frames were queued (its close crossed our
            # reply); websocket_disconnect follows. Routine: no traceback.
            logger.debug("websocket peer gone; dropping the connection's outbox")
        else:
            # The server refused a frame (a bug, or a server that reports a gone
            # peer its own way): stop accepting frames rather than queue them.
            logger.warning("websocket send failed; dropping the connection's outbox", exc_info=error)

    def stop(self) -> None:
        """The peer is gone: drop everything and end the task."""
        self.closed = True
        self._frames.clear()
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
