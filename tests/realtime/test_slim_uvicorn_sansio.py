"""uvicorn's websockets-sansio protocol, tuned: what an open connection keeps, and write backpressure."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from uvicorn.config import Config
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState

from realtime.transport import slim_uvicorn_sansio
from realtime.transport.light_sync import Flag, Inbox

KEY = base64.b64encode(b"0123456789abcdef").decode()
HANDSHAKE = (
    "GET /event/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    f"Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
).encode()


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture
def tuned(monkeypatch: pytest.MonkeyPatch) -> None:
    """The class tuned for the test, put back afterwards."""
    for name in ("__init__", "send", "handle_connect", "pause_writing", "resume_writing"):
        monkeypatch.setattr(WebSocketsSansIOProtocol, name, getattr(WebSocketsSansIOProtocol, name))
    monkeypatch.setattr(WebSocketsSansIOProtocol, slim_uvicorn_sansio._TUNED, False, raising=False)
    slim_uvicorn_sansio.install()
    slim_uvicorn_sansio.install()  # idempotent


async def open_connection() -> tuple[WebSocketsSansIOProtocol, Transport, asyncio.Queue[Any]]:
    """A tuned protocol whose application accepts and then hands its ``send`` to the test."""
    sends: asyncio.Queue[Any] = asyncio.Queue()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        await sends.put(send)
        await receive()

    config = Config(app=app, ws="websockets-sansio", lifespan="off", log_level="warning")
    config.load()
    protocol = WebSocketsSansIOProtocol(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    protocol.data_received(HANDSHAKE)
    return protocol, transport, sends


async def close(protocol: WebSocketsSansIOProtocol) -> None:
    """The client goes away: the application's ``receive`` returns and it ends."""
    protocol.connection_lost(None)
    await asyncio.gather(*protocol.tasks)


async def test_an_open_connection_keeps_no_handshake_and_no_queue_or_event(tuned: None) -> None:
    protocol, transport, sends = await open_connection()
    await sends.get()
    assert transport.written[0].startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert isinstance(protocol.queue, Inbox)
    assert isinstance(protocol.writable, Flag)
    assert "request" not in vars(protocol)
    assert "response" not in vars(protocol)
    # What the application reads of the request is its scope's copy, names lowercased (ASGI).
    assert protocol.scope["headers"] == [
        (b"host", b"127.0.0.1"),
        (b"upgrade", b"websocket"),
        (b"connection", b"Upgrade"),
        (b"sec-websocket-key", KEY.encode()),
        (b"sec-websocket-version", b"13"),
    ]
    await close(protocol)


async def test_send_waits_while_the_transport_is_over_its_high_water_mark(tuned: None) -> None:
    protocol, transport, sends = await open_connection()
    send = await sends.get()
    protocol.pause_writing()
    sending = asyncio.ensure_future(send({"type": "websocket.send", "text": "hi"}))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not sending.done()
    assert len(transport.written) == 1  # the 101 only
    protocol.resume_writing()
    await sending
    assert transport.written[1:] == [b"\x81\x02hi"]
    await close(protocol)


async def test_a_close_once_the_transport_is_closing_is_done_not_an_error(tuned: None) -> None:
    """The client went first: a close the application sends then writes nothing and raises nothing."""
    protocol, transport, sends = await open_connection()
    send = await sends.get()
    transport.closing = True
    await send({"type": "websocket.close", "code": 1000, "reason": ""})
    assert transport.written[1:] == []
    transport.closing = False
    await send({"type": "websocket.close", "code": 1008, "reason": ""})
    await send({"type": "websocket.close", "code": 1000, "reason": ""})  # closed already: done
    assert [frame[:4] for frame in transport.written[1:]] == [b"\x88\x02\x03\xf0"]
    await close(protocol)


async def test_a_flag_wakes_every_waiter_and_keeps_no_list_while_none_waits() -> None:
    flag = Flag()
    waiters = [asyncio.ensure_future(flag.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    flag.set()
    await asyncio.gather(*waiters)
    assert flag.is_set() and flag._waiters is None
    flag.clear()
    assert not flag.is_set()


async def test_an_inbox_says_when_it_is_empty() -> None:
    inbox = Inbox()
    assert inbox.empty()
    inbox.put_nowait({"type": "websocket.connect"})
    assert not inbox.empty()
    assert await inbox.get() == {"type": "websocket.connect"}
    assert inbox.empty()
