"""The bounded per-connection outbound queue (realtime/delivery/outbox.py)."""

from __future__ import annotations

import asyncio
import functools

import pytest

from realtime.core import protocol
from realtime.core.protocol import CloseCode
from realtime.core.wsframe import text_frame
from realtime.delivery import outbox as outbox_module
from realtime.delivery.direct import GONE, WAIT, WRITABLE, DirectWriter, direct_writer
from realtime.delivery.outbox import SLOW_CONSUMER_REASON, WRITE_CHUNK, Outbox


class FakeSend:
    """An ASGI ``send`` that records messages; ``gate`` can hold it mid-write."""

    def __init__(self) -> None:
        self.messages: list[dict] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.writing = asyncio.Event()

    async def __call__(self, message: dict) -> None:
        self.writing.set()
        await self.gate.wait()
        self.messages.append(message)


class Overflows:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def text(frame: str) -> dict:
    return {"type": "websocket.send", "text": frame}


def close(code: int, reason: str = "") -> dict:
    return {"type": "websocket.close", "code": code, "reason": reason}


async def settle() -> None:
    """Let the drain task run until it waits again."""
    for _ in range(10):
        await asyncio.sleep(0)


async def finished(outbox: Outbox) -> None:
    """Wait until everything queued is written (by the flush or a writing task)."""

    async def written() -> None:
        while not outbox.idle:
            if outbox.task is not None:
                await outbox.task
            else:
                await asyncio.sleep(0)

    await asyncio.wait_for(written(), timeout=1)


def make(limit: int = 10) -> tuple[Outbox, FakeSend, Overflows]:
    send, overflows = FakeSend(), Overflows()
    return Outbox(send, limit=limit, on_overflow=overflows), send, overflows


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            [("offer", "a"), ("offer", "b"), ("offer", "c"), ("close", 1000, "")],
            [text("a"), text("b"), text("c"), close(1000)],
            id="queued-before-start",
        ),
        pytest.param(
            [("start",), ("offer", "a"), ("settle",), ("offer", "b"), ("settle",), ("close", 1000, "bye")],
            [text("a"), text("b"), close(1000, "bye")],
            id="drained-as-they-come",
        ),
        pytest.param(
            [("start",), ("offer", "a"), ("offer", "b"), ("settle",), ("offer", "c"), ("close", 1013, "")],
            [text("a"), text("b"), text("c"), close(1013)],
            id="mixed",
        ),
        pytest.param([("close", 1000, "")], [close(1000)], id="close-alone"),
        pytest.param(
            [("offer", "a"), ("close", 1000, "first"), ("close", 1013, "second")],
            [text("a"), close(1000, "first")],
            id="second-close-ignored",
        ),
        pytest.param(
            [("offer", "a"), ("close", 1000, ""), ("offer", "late")],
            [text("a"), close(1000)],
            id="offer-after-close-dropped",
        ),
        pytest.param(
            [("offer", "a"), ("offer", "b"), ("close_now", 1013, "shutdown"), ("offer", "c")],
            [close(1013, "shutdown")],
            id="close-now-drops-the-backlog",
        ),
        pytest.param(
            [("offer", "a"), ("close", 1000, ""), ("close_now", 1013, "shutdown")],
            [close(1013, "shutdown")],
            id="close-now-overrides-a-queued-close",
        ),
        pytest.param(
            [("offer", '{"type":"data","id":"s","event":"caf\u00e9"}'), ("close", 1000, "")],
            [text('{"type":"data","id":"s","event":"caf\u00e9"}'), close(1000)],
            id="text-sent-verbatim",
        ),
    ],
)
async def test_frames_go_out_in_order_and_a_close_comes_after_what_was_queued(steps, expected):
    outbox, send, overflows = make()
    started = False
    for step in steps:
        match step:
            case ("start",):
                outbox.start()
                started = True
            case ("settle",):
                await settle()
            case ("offer", frame):
                outbox.offer(frame)
            case ("close", code, reason):
                outbox.close(code, reason)
            case ("close_now", code, reason):
                outbox.close_now(code, reason)
    if not started:
        outbox.start()
    await finished(outbox)
    assert send.messages == expected
    assert overflows.calls == 0


async def test_offer_reports_whether_the_frame_was_queued():
    outbox, send, _ = make()
    assert outbox.offer("a") is True
    assert len(outbox) == 1
    outbox.close(CloseCode.NORMAL)
    assert outbox.closed is True
    assert outbox.offer("b") is False
    assert len(outbox) == 2


async def test_an_overflowing_frame_closes_with_1008_drops_the_backlog_and_reports_once():
    outbox, send, overflows = make(limit=2)
    assert [outbox.offer("a"), outbox.offer("b"), outbox.offer("c"), outbox.offer("d")] == [
        True,
        True,
        False,
        False,
    ]
    assert overflows.calls == 1
    outbox.start()
    await finished(outbox)
    assert send.messages == [close(1008, SLOW_CONSUMER_REASON)]
    assert overflows.calls == 1


async def test_a_frame_being_written_when_the_outbox_overflows_still_goes_out_before_the_close():
    outbox, send, overflows = make(limit=2)
    send.gate.clear()
    outbox.start()
    outbox.offer("a")
    await asyncio.wait_for(send.writing.wait(), timeout=1)
    # "a" is in flight; "b" and "c" fill the queue and "d" overflows it.
    assert [outbox.offer("b"), outbox.offer("c"), outbox.offer("d")] == [True, True, False]
    send.gate.set()
    await finished(outbox)
    assert send.messages == [text("a"), close(CloseCode.SLOW_CONSUMER, SLOW_CONSUMER_REASON)]
    assert overflows.calls == 1


@pytest.mark.parametrize("limit", [1, 3, 100])
async def test_exactly_limit_frames_fit_while_the_socket_is_not_written(limit):
    outbox, send, overflows = make(limit=limit)
    assert all(outbox.offer(str(i)) for i in range(limit))
    assert overflows.calls == 0
    outbox.close(CloseCode.NORMAL)
    outbox.start()
    await finished(outbox)
    assert send.messages == [*(text(str(i)) for i in range(limit)), close(1000)]


async def test_a_reader_that_keeps_up_never_overflows_a_small_outbox():
    outbox, send, overflows = make(limit=2)
    outbox.start()
    for i in range(50):
        assert outbox.offer(str(i)) is True
        await settle()
    outbox.close(CloseCode.NORMAL)
    await finished(outbox)
    assert send.messages == [*(text(str(i)) for i in range(50)), close(1000)]
    assert overflows.calls == 0


async def test_after_close_nothing_is_accepted_and_overflow_is_not_reported():
    outbox, send, overflows = make(limit=1)
    outbox.offer("a")
    outbox.close(CloseCode.NORMAL)
    assert [outbox.offer("b"), outbox.offer("c")] == [False, False]
    assert overflows.calls == 0
    outbox.start()
    await finished(outbox)
    assert send.messages == [text("a"), close(1000)]


async def test_stop_drops_everything_and_cancels_the_drain_task():
    outbox, send, overflows = make()
    send.gate.clear()
    outbox.start()
    outbox.offer("a")
    await asyncio.wait_for(send.writing.wait(), timeout=1)
    outbox.offer("b")
    outbox.stop()
    assert (outbox.closed, len(outbox)) == (True, 0)
    assert outbox.offer("c") is False
    writer = outbox.task
    assert writer is not None
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(writer, timeout=1)
    assert (send.messages, outbox.task, overflows.calls) == ([], None, 0)


async def test_stop_before_start_only_marks_the_outbox_closed():
    outbox, send, _ = make()
    outbox.offer("a")
    outbox.stop()
    assert (outbox.closed, len(outbox), outbox.task) == (True, 0, None)
    assert send.messages == []


async def test_an_idle_outbox_sends_nothing_and_holds_no_task():
    outbox, send, _ = make()
    outbox.start()
    await settle()
    assert (send.messages, outbox.task, outbox.idle) == ([], None, True)


async def test_a_send_that_never_suspends_is_written_in_the_same_loop_pass_without_a_task():
    sent: list[dict] = []

    async def immediate_send(message: dict) -> None:
        sent.append(message)

    outbox = Outbox(immediate_send, limit=10, on_overflow=Overflows())
    outbox.start()
    for frame in ("a", "b", "c"):
        outbox.offer(frame)
    assert sent == []  # offer() only queues
    await asyncio.sleep(0)  # one loop pass: the scheduled flush
    assert (sent, outbox.task, outbox.idle) == ([text("a"), text("b"), text("c")], None, True)


async def test_a_send_that_suspends_hands_the_rest_to_a_task_that_ends_when_done():
    outbox, send, _ = make()
    send.gate.clear()
    outbox.start()
    outbox.offer("a")
    outbox.offer("b")
    await asyncio.wait_for(send.writing.wait(), timeout=1)
    writer = outbox.task
    assert writer is not None and not writer.done()
    outbox.offer("c")  # taken by the writing task, in order
    send.gate.set()
    await asyncio.wait_for(writer, timeout=1)
    assert (send.messages, outbox.task) == ([text("a"), text("b"), text("c")], None)
    outbox.offer("d")
    await finished(outbox)
    assert send.messages[-1] == text("d")


@pytest.mark.parametrize(
    "close_with",
    [
        pytest.param(lambda outbox: outbox.close(CloseCode.NORMAL), id="close"),
        pytest.param(lambda outbox: outbox.close_now(CloseCode.TRY_AGAIN_LATER), id="close-now"),
        pytest.param(lambda outbox: [outbox.offer("a"), outbox.offer("b")], id="overflow"),
    ],
)
async def test_the_close_code_is_sent_as_a_plain_int(close_with):
    outbox, send, _ = make(limit=1)
    close_with(outbox)
    outbox.start()
    await finished(outbox)
    assert type(send.messages[-1]["code"]) is int


class FailingSend(FakeSend):
    def __init__(self, fail_on: str) -> None:
        super().__init__()
        self.fail_on = fail_on

    async def __call__(self, message: dict) -> None:
        if message.get("text") == self.fail_on:
            raise RuntimeError("socket is gone")
        await super().__call__(message)


async def test_a_failed_send_ends_the_task_quietly_and_closes_the_outbox(caplog):
    send, overflows = FailingSend(fail_on="b"), Overflows()
    outbox = Outbox(send, limit=10, on_overflow=overflows)
    for frame in ("a", "b", "c"):
        outbox.offer(frame)
    outbox.start()
    await finished(outbox)
    assert send.messages == [text("a")]
    assert (outbox.closed, len(outbox)) == (True, 0)
    assert outbox.offer("d") is False
    assert overflows.calls == 0
    assert [record.levelname for record in caplog.records if record.name == "realtime.delivery.outbox"] == [
        "WARNING"
    ]


# -- daphne: a socket whose transport pauses its producer -----------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.producer = None

    def registerProducer(self, producer, streaming: bool) -> None:
        assert streaming is True
        self.producer = producer

    def unregisterProducer(self) -> None:
        self.producer = None


class FakeAutobahnProtocol:
    def __init__(self) -> None:
        self.transport = FakeTransport()
        self.written: list = []

    def sendCloseFrame(self, code: int, reasonUtf8: bytes | None = None) -> None:
        self.written.append(("close", type(code), code, reasonUtf8))


def daphne_send(protocol: FakeAutobahnProtocol):
    """Shaped like daphne's ``partial(Server.handle_reply, protocol)``; never suspends."""

    async def handle_reply(protocol, message: dict) -> None:
        protocol.written.append(message["text"])

    return functools.partial(handle_reply, protocol)


async def test_under_daphne_frames_wait_while_the_transport_is_paused_and_follow_on_resume():
    peer = FakeAutobahnProtocol()
    outbox = Outbox(daphne_send(peer), limit=10, on_overflow=Overflows())
    outbox.start()
    producer = peer.transport.producer
    assert producer is not None
    producer.pauseProducing()
    outbox.offer("a")
    outbox.offer("b")
    await settle()
    assert (peer.written, len(outbox)) == ([], 2)
    producer.resumeProducing()
    await finished(outbox)
    assert peer.written == ["a", "b"]
    outbox.close(CloseCode.NORMAL, "bye")
    await finished(outbox)
    assert peer.written == ["a", "b", ("close", int, 1000, b"bye")]


async def test_under_daphne_a_paused_socket_that_overflows_gets_1008_at_once():
    peer, overflows = FakeAutobahnProtocol(), Overflows()
    outbox = Outbox(daphne_send(peer), limit=2, on_overflow=overflows)
    outbox.start()
    peer.transport.producer.pauseProducing()
    assert [outbox.offer("a"), outbox.offer("b"), outbox.offer("c")] == [True, True, False]
    await finished(outbox)
    assert peer.written == [("close", int, 1008, SLOW_CONSUMER_REASON.encode())]
    assert (overflows.calls, outbox.closed) == (1, True)


async def test_writes_run_in_the_connection_s_context_not_the_publisher_s():
    from realtime.ops.logs import connection_id_var

    seen: list[str | None] = []

    async def send(message: dict) -> None:
        seen.append(connection_id_var.get())

    outbox = Outbox(send, limit=10, on_overflow=Overflows())

    async def connection() -> None:
        connection_id_var.set("subscriber")
        outbox.start()

    async def publisher() -> None:
        connection_id_var.set("publisher")
        outbox.offer("a")

    await asyncio.create_task(connection())
    await asyncio.create_task(publisher())
    await finished(outbox)
    assert seen == ["subscriber"]


# -- direct writes: whole frames as bytes to the server's transport ----------------------------------


class FakeWire(DirectWriter):
    """A transport the outbox writes bytes to; ``log`` is shared with the ``send`` that closes."""

    server = "fake"

    def __init__(self, log: list) -> None:
        self.log = log
        self.current = WRITABLE
        self.ready = asyncio.Event()

    def state(self) -> int:
        return self.current

    def write(self, data: bytes) -> None:
        assert self.current == WRITABLE, "written while the transport said it could not take it"
        self.log.append(data)

    async def writable(self) -> None:
        await self.ready.wait()

    def resume(self) -> None:
        self.current = WRITABLE
        self.ready.set()


def frames_of(writes: list) -> list:
    """The text of every frame in the bytes written, and closes as they are."""
    frames = []
    for item in writes:
        if not isinstance(item, bytes):
            frames.append(item)
            continue
        data = item
        while data:
            assert data[0] == 0x81 and data[1] < 126, "small final text frames only, in these tests"
            frames.append(data[2 : 2 + data[1]].decode())
            data = data[2 + data[1] :]
    return frames


@pytest.fixture
def wired(monkeypatch):
    """``wired(limit)`` → an outbox whose direct writer is a :class:`FakeWire`, and the shared log."""

    def make_wired(limit: int = 10) -> tuple[Outbox, FakeWire, list, Overflows]:
        log: list = []
        wire = FakeWire(log)

        async def send(message: dict) -> None:
            log.append(message)

        monkeypatch.setattr(outbox_module, "direct_writer", lambda send, flow: wire)
        overflows = Overflows()
        return Outbox(send, limit=limit, on_overflow=overflows), wire, log, overflows

    return make_wired


async def test_direct_frames_of_a_loop_pass_go_out_in_one_write_in_order_then_the_close(wired):
    outbox, wire, log, overflows = wired()
    outbox.start()
    assert (outbox.wire, outbox.server) == (True, "fake")
    outbox.offer(protocol.KEEPALIVE)
    outbox.offer(text_frame(b'{"type":"data","id":"s","event":1}'))
    outbox.offer('{"type":"error","errors":[]}')
    outbox.offer(text_frame(b'{"type":"data","id":"s","event":2}'))
    outbox.close(CloseCode.NORMAL, "bye")
    await finished(outbox)
    assert len([item for item in log if isinstance(item, bytes)]) == 1
    assert frames_of(log) == [
        protocol.KEEPALIVE,
        '{"type":"data","id":"s","event":1}',
        '{"type":"error","errors":[]}',
        '{"type":"data","id":"s","event":2}',
        close(1000, "bye"),
    ]
    assert overflows.calls == 0


async def test_direct_frames_are_written_in_the_loop_pass_after_the_offer_without_a_task(wired):
    outbox, wire, log, _ = wired()
    outbox.start()
    outbox.offer("a")
    outbox.offer("b")
    assert log == []  # offer() only queues
    await asyncio.sleep(0)
    assert (frames_of(log), outbox.task, outbox.idle) == (["a", "b"], None, True)
    outbox.offer("c")
    await asyncio.sleep(0)
    assert (frames_of(log), len(log), outbox.task) == (["a", "b", "c"], 2, None)


async def test_direct_frames_wait_while_the_transport_cannot_take_them_and_follow_in_order(wired):
    outbox, wire, log, _ = wired()
    wire.current = WAIT
    outbox.start()
    outbox.offer("a")
    outbox.offer("b")
    await settle()
    assert (log, len(outbox)) == ([], 2)
    assert outbox.task is not None
    outbox.offer("c")
    wire.resume()
    await finished(outbox)
    assert frames_of(log) == ["a", "b", "c"]


async def test_direct_frames_are_written_in_bounded_runs_that_add_up_to_every_frame(wired):
    outbox, wire, log, _ = wired(limit=1000)
    outbox.start()
    frames = [text_frame(b"x" * 100) for _ in range(1000)]
    for frame in frames:
        outbox.offer(frame)
    await finished(outbox)
    assert b"".join(log) == b"".join(frames)
    assert len(log) > 1
    assert all(len(chunk) < WRITE_CHUNK + 102 for chunk in log)


async def test_a_transport_that_is_gone_drops_the_outbox_quietly_and_writes_nothing(wired, caplog):
    outbox, wire, log, overflows = wired()
    wire.current = GONE
    outbox.start()
    outbox.offer("a")
    outbox.close(CloseCode.NORMAL)
    await finished(outbox)
    assert (log, outbox.closed, len(outbox), overflows.calls) == ([], True, 0, 0)
    assert outbox.offer("b") is False
    assert [r for r in caplog.records if r.name == "realtime.delivery.outbox" and r.levelno > 10] == []


async def test_a_slow_consumer_waiting_for_its_transport_gets_1008_at_once_and_nothing_else(wired):
    outbox, wire, log, overflows = wired(limit=2)
    wire.current = WAIT
    outbox.start()
    assert [outbox.offer("a"), outbox.offer("b")] == [True, True]
    await settle()
    waiting = outbox.task
    assert waiting is not None
    assert outbox.offer("c") is False
    await finished(outbox)
    assert waiting.cancelled()
    assert log == [close(1008, SLOW_CONSUMER_REASON)]
    assert (overflows.calls, outbox.closed) == (1, True)
    # The transport drains later: nothing more goes out after the close.
    wire.resume()
    await settle()
    assert log == [close(1008, SLOW_CONSUMER_REASON)]


async def test_without_direct_writes_the_outbox_never_looks_for_a_writer(monkeypatch):
    monkeypatch.setattr(outbox_module, "direct_writer", lambda send, flow: pytest.fail("looked"))
    send = FakeSend()
    outbox = Outbox(send, limit=10, on_overflow=Overflows(), direct=False)
    outbox.start()
    outbox.offer("a")
    await finished(outbox)
    assert (outbox.wire, outbox.server, send.messages) == (False, "asgi", [text("a")])


def test_only_daphne_and_uvicorn_get_a_direct_writer():
    async def wrapped_send(message: dict) -> None:
        pass

    assert direct_writer(wrapped_send, None) is None
    # daphne's shape, before its socket is open (or a fake without autobahn's state): send.
    assert direct_writer(daphne_send(FakeAutobahnProtocol()), None) is None


@pytest.mark.parametrize("direct", [False, True], ids=["asgi-send", "direct"])
async def test_an_outbox_that_wrote_everything_holds_an_empty_queue(direct, wired):
    if direct:
        outbox, _, log, _ = wired()
    else:
        outbox, send, _ = make()
    outbox.start()
    outbox.offer("a")
    outbox.offer("b")
    await finished(outbox)
    assert (outbox._frames, len(outbox), outbox.idle) == ([], 0, True)
    outbox.offer("c")
    await finished(outbox)
    assert outbox._frames == []
