"""The lighter daphne WebSocket protocol (realtime.transport.slim_daphne), in process.

A whole upgrade runs over Twisted's in-memory transport against a stand-in for
daphne's server: the handshake's bytes, frames both ways, the close, and what a
connection keeps once it is open. tests/e2e run every protocol test on the real
server with it installed (and ``daphne-stock`` without).
"""

from __future__ import annotations

import asyncio
import base64
import os
from typing import Any

import pytest
from autobahn.websocket.protocol import WebSocketServerProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from realtime.core.wsframe import text_frame
from realtime.transport import slim_daphne
from realtime.transport.slim_daphne import NOTHING_QUEUED, Inbox, SlimWebSocketFactory


class FakeServer:
    """What daphne's WebSocket protocol uses of daphne's Server."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.connections: dict[Any, dict[str, Any]] = {}
        self.root_path = ""
        self.proxy_forwarded_address_header = None
        self.websocket_timeout = 86400
        self.websocket_connect_timeout = 20
        self.ping_interval = 20
        self.actions: list[str] = []

    def protocol_connected(self, protocol: Any) -> None:
        self.connections[protocol] = {}

    def protocol_disconnected(self, protocol: Any) -> None:
        self.connections[protocol]["disconnected"] = True

    def log_action(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        self.actions.append(f"{action} {details['path']}")

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        protocol.handle_reply(message)


def _factory(server: FakeServer) -> SlimWebSocketFactory:
    factory = SlimWebSocketFactory(server, server="daphne")
    # As daphne's Server.run sets them.
    factory.setProtocolOptions(
        autoPingTimeout=30,
        allowNullOrigin=True,
        openHandshakeTimeout=5,
        maxMessagePayloadSize=1_048_576,
        maxFramePayloadSize=1_048_576,
    )
    return factory


def _upgrade(key: bytes) -> bytes:
    return (
        b"GET /event/realtime HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Protocol: aws-appsync-event-ws\r\n\r\n"
    )


def _masked_text(text: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    body = bytes(byte ^ mask[i % 4] for i, byte in enumerate(text))
    return bytes([0x81, 0x80 | len(text)]) + mask + body


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_upgrade_runs_as_under_daphne_and_keeps_no_handshake_leftovers() -> None:
    received: list[dict[str, Any]] = []
    scopes: list[dict[str, Any]] = []

    async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "websocket.connect":
                await send({"type": "websocket.accept", "subprotocol": "aws-appsync-event-ws"})
            elif message["type"] == "websocket.receive":
                await send({"type": "websocket.send", "text": "echo " + message["text"]})
            else:
                return

    server = FakeServer(application)
    protocol = _factory(server).buildProtocol(None)
    protocol._raw_query_string = b""  # daphne's HTTP side sets it before handing over
    transport = StringTransport()
    # daphne's HTTP channel stays registered as the producer after the upgrade.
    transport.registerProducer(object(), True)
    protocol.makeConnection(transport)
    key = base64.b64encode(os.urandom(16))
    protocol.dataReceived(_upgrade(key))
    await _settle()

    response = transport.value().decode()
    assert response.startswith("HTTP/1.1 101 Switching Protocols\r\n")
    assert "Sec-WebSocket-Protocol: aws-appsync-event-ws\r\n" in response
    assert scopes[0]["subprotocols"] == ["aws-appsync-event-ws"]
    assert scopes[0]["path"] == "/event/realtime"
    assert received == [{"type": "websocket.connect"}]
    assert server.actions == ["connecting /event/realtime", "connected /event/realtime"]

    # What the connection keeps once open: no option copies, no handshake leftovers.
    kept = vars(protocol)
    assert not set(WebSocketServerProtocol.CONFIG_ATTRS) & set(kept)
    assert protocol.maxMessagePayloadSize == 1_048_576
    assert protocol.http_headers is None and protocol.http_request_data is None
    assert protocol.http_response_data is None and protocol.websocket_protocols is None
    assert protocol._transport_details is None
    assert protocol.send_queue is NOTHING_QUEUED
    assert isinstance(protocol.application_queue, Inbox)

    transport.clear()
    protocol.dataReceived(_masked_text(b"hello"))
    await _settle()
    assert received[1:] == [{"type": "websocket.receive", "text": "hello"}]
    assert transport.value() == text_frame(b"echo hello")

    transport.clear()
    protocol.dataReceived(bytes([0x88, 0x82]) + b"\x00\x00\x00\x00" + (1000).to_bytes(2, "big"))
    protocol.connectionLost(Failure(ConnectionDone()))
    await _settle()
    # The close is echoed, the application hears of it, daphne logs it with the path.
    assert transport.value() == bytes([0x88, 0x02]) + (1000).to_bytes(2, "big")
    assert received[2:] == [{"type": "websocket.disconnect", "code": 1000}]
    assert server.actions[-1] == "disconnected /event/realtime"
    assert server.connections[protocol]["application_instance"].done()


async def test_a_chopped_write_gets_autobahn_its_send_queue() -> None:
    protocol = _factory(FakeServer(None)).buildProtocol(None)
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert protocol.send_queue is NOTHING_QUEUED
    protocol.sendData(b"abcdef", chopsize=2)
    # autobahn writes the first chunk now and the rest on later reactor turns, from the queue.
    assert isinstance(protocol.send_queue, slim_daphne.deque)
    assert transport.value() == b"ab"


def test_options_are_the_factorys_and_a_function_option_stays_a_function() -> None:
    factory = _factory(FakeServer(None))
    accept = factory.perMessageCompressionAccept
    protocol_class = factory.protocol
    assert protocol_class.maxFramePayloadSize == 1_048_576
    assert protocol_class.openHandshakeTimeout == 5
    # Not bound as a method of the instance: called with the offers only, as autobahn does.
    assert protocol_class.perMessageCompressionAccept is accept
    factory.setProtocolOptions(openHandshakeTimeout=7)
    assert factory.protocol.openHandshakeTimeout == 7


async def test_the_inbox_hands_out_messages_in_order_without_yielding_while_they_wait() -> None:
    inbox = Inbox()
    for n in range(3):
        inbox.put_nowait({"n": n})
    loop_turns = 0

    async def count_turns() -> None:
        nonlocal loop_turns
        while True:
            await asyncio.sleep(0)
            loop_turns += 1

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    turns_before = loop_turns
    assert [await inbox.get() for _ in range(3)] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert loop_turns == turns_before
    assert inbox.qsize() == 0

    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    assert not waiting.done()
    inbox.put_nowait({"n": 3})
    inbox.put_nowait({"n": 4})
    assert await waiting == {"n": 3}
    assert await inbox.get() == {"n": 4}
    counter.cancel()


async def test_a_cancelled_read_loses_nothing() -> None:
    inbox = Inbox()
    waiting = asyncio.create_task(inbox.get())
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    inbox.put_nowait({"n": 1})
    assert await inbox.get() == {"n": 1}


def test_autobahns_debug_line_arguments_are_formatted_only_when_a_line_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import autobahn.twisted.websocket
    import autobahn.websocket.protocol
    import daphne.server
    from autobahn import util

    monkeypatch.setattr(daphne.server, "WebSocketFactory", daphne.server.WebSocketFactory)
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        monkeypatch.setattr(module, "hltype", module.hltype)
        monkeypatch.setattr(module, "hlval", module.hlval)
    expected_type, expected_value = util.hltype(WebSocketServerProtocol.sendData), util.hlval(1234)
    formatted: list[Any] = []
    monkeypatch.setattr(util, "hltype", lambda obj: formatted.append(obj) or expected_type)
    slim_daphne.install()

    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        text = module.hltype(WebSocketServerProtocol.sendData)
        value = module.hlval(1234)
        assert formatted == []
        # str.format, as txaio formats a log line.
        line = "{func} sent {n}".format(func=text, n=value)  # noqa: UP032
        assert line == f"{expected_type} sent {expected_value}"
        assert formatted == [WebSocketServerProtocol.sendData]
        formatted.clear()
