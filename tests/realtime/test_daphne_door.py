"""The front door inside daphne (``realtime.transport.daphne_door``): what Twisted answers itself.

A refusal the front door can decide at once is written by Twisted, byte for byte the ASGI front
door's 429, without a daphne request (from the raw bytes of a plain request) or without an ASGI
application instance (any other request). Everything else goes on exactly as daphne reads it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from daphne.http_protocol import WebRequest as WebRequestBase
from django.test import override_settings
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport

from quiz.admission import JOIN_GATE
from realtime.auth.limits import rate_limiter
from realtime.ops.metrics import metrics
from realtime.transport.daphne_door import (
    parse_plain_request,
    parse_upgrade_request,
    refused_connection,
    shed_in_daphne,
    shedding_channel_class,
    shedding_request_class,
)
from realtime.transport.frontdoor import REJECT_GRACE_SECONDS, FrontDoor
from realtime.transport.gates import connect_gate, event_gate
from realtime.transport.overload import overload

pytestmark = pytest.mark.usefixtures("calm")

THROTTLED = (
    b'{"error":{"code":"throttled","message":"Too many joins right now; retry after the indicated delay."}}'
)
JOIN = "/api/quiz/games/ABC123/join"
HEADERS = [(b"host", b"127.0.0.1"), (b"content-type", b"application/json")]


def post(
    path: str = JOIN, body: bytes = b'{"nickname": "ada"}', *extra: bytes, version: bytes = b"HTTP/1.1"
) -> bytes:
    head = [b"POST " + path.encode() + b" " + version, b"Host: 127.0.0.1", b"Content-Type: application/json"]
    head += [*extra, b"Content-Length: " + str(len(body)).encode()]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            post(),
            (
                b"POST",
                JOIN.encode(),
                [
                    (b"host", b"127.0.0.1"),
                    (b"content-type", b"application/json"),
                    (b"content-length", b"19"),
                ],
            ),
        ),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", (b"GET", b"/healthz", [(b"host", b"x")])),
        (post()[:-1], None),  # the body still on its way
        (post().partition(b"\r\n\r\n")[0], None),  # the head still on its way
        (post() + post(), None),  # pipelined: Twisted reads them in order
        (post(version=b"HTTP/1.0"), None),
        (post("/x", b"", b"Transfer-Encoding: chunked"), None),
        (post("/x", b"", b"Connection: close"), None),
        (
            post("/x", b"", b"Connection: Keep-Alive"),  # what browsers send: nothing changes
            (b"POST", b"/x", [*HEADERS, (b"connection", b"Keep-Alive"), (b"content-length", b"0")]),
        ),
        (post("/x", b"", b"Expect: 100-continue"), None),
        (post("/x", b"", b"Upgrade: websocket"), None),
        (post("/x", b"", b"Content-Length: 0"), None),  # twice
        (post("/x", b"", b"Bad header"), None),
        (post("/x", b"", b"Name : value"), None),
        (b"POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", None),
        (b"POST  /x HTTP/1.1\r\n\r\n", None),
        (post(body=b"x" * 9000), None),  # larger than any refusal worth the shortcut
    ],
)
def test_only_one_whole_plain_request_is_read_from_the_raw_bytes(data: bytes, expected: Any) -> None:
    assert parse_plain_request(data) == expected


class NoRequest:
    """A request factory for channels that must not build a request; records those they do build."""

    def __init__(self) -> None:
        self.built: list[Any] = []

    def __call__(self, channel: Any, queued: int = 0) -> Any:
        request = mock.MagicMock(name="request")
        self.built.append(request)
        return request


def connection(
    door: FrontDoor, client: str = "10.0.0.1", clock: Clock | None = None
) -> tuple[Any, StringTransport, NoRequest]:
    """A shedding channel on a fake TCP connection from ``client``; its request factory records."""
    channel = shedding_channel_class(door, clock)()
    channel.callLater = Clock().callLater
    channel.factory = SimpleNamespace(server=SimpleNamespace(server_name="daphne", action_logger=None))
    requests = NoRequest()
    channel.requestFactory = requests
    transport = StringTransport(peerAddress=IPv4Address("TCP", client, 50000))
    channel.makeConnection(transport)
    return channel, transport, requests


def answer(transport: StringTransport) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """The status line, the headers (the ``date`` checked and left out) and the body written."""
    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = dict(line.split(b": ", 1) for line in lines)
    assert headers.pop(b"date").endswith(b" GMT")
    transport.clear()
    return status, headers, body


def refused(operation: str, reason: str) -> int:
    return metrics.totals["refused", f"{operation}:{reason}"]


def test_an_overloaded_process_answers_a_join_from_its_bytes_and_builds_no_request(overloaded) -> None:
    channel, transport, requests = connection(FrontDoor(None, gates=[JOIN_GATE]))
    before = refused("quiz.join", "overload")

    channel.dataReceived(post())
    status, headers, body = answer(transport)
    # The same connection, still between requests: the next refusal goes the same way.
    channel.dataReceived(post())
    again = answer(transport)

    assert status == b"HTTP/1.1 429 Too Many Requests"
    assert headers == {
        b"server": b"daphne",
        b"content-type": b"application/json",
        b"content-length": str(len(THROTTLED)).encode(),
        b"retry-after": b"1",
    }
    assert body == THROTTLED
    assert again == (status, headers, body)
    assert requests.built == []
    assert not transport.disconnecting
    assert refused("quiz.join", "overload") == before + 2


@override_settings(QUIZ={"JOIN_RATE": "100/s", "JOIN_RATE_PER_CLIENT": "1/m"})
def test_a_spent_rate_is_refused_with_its_retry_after_and_other_clients_are_not() -> None:
    door = FrontDoor(None, gates=[JOIN_GATE])
    client_limit = JOIN_GATE.checks("10.0.0.1")[0]
    assert rate_limiter.local.take([client_limit], time.monotonic()) == 0  # the client's one join
    spent, spent_transport, spent_requests = connection(door, "10.0.0.1")
    other, other_transport, other_requests = connection(door, "10.0.0.2")
    before = refused("quiz.join", "rate")

    spent.dataReceived(post())
    other.dataReceived(post())

    status, headers, body = answer(spent_transport)
    assert (status, body) == (b"HTTP/1.1 429 Too Many Requests", THROTTLED)
    assert headers[b"retry-after"] == b"60"
    assert spent_requests.built == []
    # The other client's join goes on to daphne, untouched (Twisted built its request).
    assert other_transport.value() == b""
    assert len(other_requests.built) == 1
    # A peek counts nothing: the admitted join is counted once, by the ASGI front door.
    assert rate_limiter.local.peek(JOIN_GATE.checks("10.0.0.2")[:1], time.monotonic()) == 0
    assert refused("quiz.join", "rate") == before + 1


def test_post_event_is_refused_in_appsyncs_shape(overloaded) -> None:
    channel, transport, requests = connection(FrontDoor(None, gates=[event_gate()]))
    channel.dataReceived(post("/event", b'{"channel":"/default/x","events":["1"]}'))

    assert_event_refusal(*answer(transport))
    assert requests.built == []


def assert_event_refusal(status: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
    """A ``POST /event`` refused for overload, in AppSync's shape."""
    assert status == b"HTTP/1.1 429 Too Many Requests"
    assert (headers[b"retry-after"], headers[b"x-amzn-errortype"]) == (b"1", b"LimitExceededException")
    assert headers[b"access-control-allow-origin"] == b"*"
    assert json.loads(body) == {
        "errors": [
            {
                "errorType": "LimitExceededException",
                "message": "Too many requests right now; retry after the indicated delay.",
            }
        ]
    }


@pytest.mark.parametrize(
    "data",
    [
        post("/healthz"),  # no gate covers it
        b"GET " + JOIN.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a method the gate leaves alone
        post(version=b"HTTP/1.0"),  # not plain: Twisted reads it (and daphne's request may refuse it)
        post()[:60],  # a request in several reads (this one its first line and part of a header)
    ],
)
def test_everything_else_goes_to_twisted_untouched(overloaded, data: bytes) -> None:
    channel, transport, requests = connection(FrontDoor(None, gates=[JOIN_GATE]))
    channel.dataReceived(data)
    assert transport.value() == b""
    assert len(requests.built) == 1


def test_mid_request_bytes_are_never_read_as_a_new_request(overloaded) -> None:
    channel, transport, requests = connection(FrontDoor(None, gates=[JOIN_GATE]))
    whole = post()
    channel.dataReceived(whole[:30])
    channel.dataReceived(whole[30:])  # the rest of the same request, a whole request by itself
    assert transport.value() == b""
    assert len(requests.built) == 1


class FakeServer:
    """What daphne's request needs of its server; an application instance must never be made."""

    server_name = "daphne"
    action_logger = None
    proxy_forwarded_address_header = None
    root_path = ""

    def __init__(self) -> None:
        self.create_application = mock.Mock(side_effect=AssertionError("an application instance was made"))
        self.connections: dict[Any, Any] = {}

    def protocol_connected(self, protocol: Any) -> None:
        self.connections[protocol] = {}

    def protocol_disconnected(self, protocol: Any) -> None:
        self.connections[protocol]["disconnected"] = True


def test_a_request_twisted_parsed_is_refused_without_an_application_instance(overloaded) -> None:
    """A join that came in several reads: Twisted parses it, and daphne's request answers it."""
    door = FrontDoor(None, gates=[JOIN_GATE])
    channel, transport, _ = connection(door)
    server = FakeServer()
    channel.factory = SimpleNamespace(server=server, log=lambda request: None)
    channel.requestFactory = shedding_request_class(door)
    whole = post()

    channel.dataReceived(whole[:30])
    channel.dataReceived(whole[30:])

    head, _, body = transport.value().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {name.lower(): value for name, value in (line.split(b": ", 1) for line in lines)}
    assert status == b"HTTP/1.1 429 Too Many Requests"
    assert (headers[b"retry-after"], headers[b"content-type"], body) == (b"1", b"application/json", THROTTLED)
    server.create_application.assert_not_called()
    assert not transport.disconnecting


def test_without_daphne_nothing_is_installed() -> None:
    with mock.patch.dict("sys.modules", {"daphne": None}):
        assert shed_in_daphne(FrontDoor(None, gates=[JOIN_GATE])) is False


def test_a_refusal_from_the_bytes_gets_daphnes_access_log_line(overloaded) -> None:
    channel, transport, _ = connection(FrontDoor(None, gates=[JOIN_GATE]), "10.0.0.9")
    server = channel.factory.server
    server.action_logger = True
    server.log_action = mock.Mock()

    channel.dataReceived(post())

    server.log_action.assert_called_once_with(
        "http",
        "complete",
        {
            "path": JOIN,
            "status": 429,
            "method": "POST",
            "client": "10.0.0.9:50000",
            "time_taken": 0.0,
            "size": len(THROTTLED),
        },
    )


# -- WebSocket connects ------------------------------------------------------------------------------

# RFC 6455 §1.3's own example key and answer.
KEY, ACCEPT = b"dGhlIHNhbXBsZSBub25jZQ==", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
# The upgrade accepted with AppSync's subprotocol, as daphne answers it, before a refusal.
SWITCHING = (
    b"HTTP/1.1 101 Switching Protocols\r\nServer: daphne\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Protocol: aws-appsync-event-ws\r\nSec-WebSocket-Accept: " + ACCEPT + b"\r\n\r\n"
)
CONNECTION_ERROR = (
    b'{"type":"connection_error","errors":[{"errorType":"LimitExceededError","errorCode":429,'
    b'"message":"Too many connections right now; retry with backoff."}]}'
)
# The front door's refusal: connection_error as one text frame (126: a 16-bit length), then close 1000.
REFUSAL_FRAMES = (
    b"\x81\x7e" + len(CONNECTION_ERROR).to_bytes(2, "big") + CONNECTION_ERROR + b"\x88\x02\x03\xe8"
)
# A client's masked connection_init and close frames (their content is not read).
CONNECTION_INIT = b"\x81\xa6\x00\x00\x00\x00" + b'{"type":"connection_init","x":"xxxxx"}'
CLIENT_CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


def upgrade(path: str = "/event/realtime", *extra: bytes, key: bytes = KEY) -> bytes:
    head = [
        b"GET " + path.encode() + b" HTTP/1.1",
        b"Host: 127.0.0.1",
        b"Upgrade: websocket",
        b"Connection: Upgrade",
        b"Sec-WebSocket-Key: " + key,
        b"Sec-WebSocket-Version: 13",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n"


@pytest.fixture
def late_loop() -> Iterator[None]:
    with mock.patch.object(overload, "on_time", return_value=False):
        yield


def websocket_connection(client: str = "10.0.0.1") -> tuple[Any, StringTransport, FakeServer, Clock]:
    """A shedding channel whose requests are daphne's (shedding) ones, on a fake connection."""
    door = FrontDoor(None, gates=[connect_gate()])
    clock = Clock()
    channel, transport, _ = connection(door, client, clock)
    server = FakeServer()
    server.ws_factory = mock.Mock(name="ws_factory")
    server.ws_factory.buildProtocol.side_effect = AssertionError("daphne built a WebSocket protocol")
    channel.factory = SimpleNamespace(server=server, log=lambda request: None)
    channel.requestFactory = shedding_request_class(door, clock)
    return channel, transport, server, clock


def daphnes_protocol(server: FakeServer) -> Any:
    """Let ``server`` build daphne's WebSocket protocol; returns the (recording) protocol it builds."""
    protocol = mock.Mock(name="websocket_protocol")
    server.ws_factory.buildProtocol.side_effect = None
    server.ws_factory.buildProtocol.return_value = protocol
    return protocol


def assert_handed_to_daphnes_protocol(
    server: FakeServer, protocol: Any, transport: StringTransport, data: bytes, query: bytes = b""
) -> None:
    """What daphne's request does with an upgrade: the connection and the request's bytes go to
    its WebSocket protocol (autobahn then answers or refuses the handshake); nothing written yet."""
    server.ws_factory.buildProtocol.assert_called_once_with(transport.getPeer())
    assert transport.protocol is protocol
    protocol.makeConnection.assert_called_once_with(transport)
    protocol.dataReceived.assert_called_once_with(data)
    assert protocol._raw_query_string == query
    assert transport.value() == b""
    assert server.connections == {}  # no daphne request was made


def test_a_connect_while_the_loop_is_late_is_refused_in_the_front_doors_shape_by_twisted(late_loop) -> None:
    channel, transport, server, clock = websocket_connection()
    before = refused("connect", "overload")

    channel.dataReceived(
        upgrade("/event/realtime", b"Sec-WebSocket-Protocol: aws-appsync-event-ws, header-e30")
    )

    assert transport.value() == SWITCHING
    transport.clear()
    # The client's connection_init is answered with the refusal, then its close ends the connection.
    transport.protocol.dataReceived(CONNECTION_INIT)
    assert transport.value() == REFUSAL_FRAMES
    assert not transport.disconnecting
    transport.protocol.dataReceived(CLIENT_CLOSE)
    assert transport.disconnecting
    assert clock.getDelayedCalls() == []
    # No autobahn protocol, no application instance, not even a daphne request: read from the bytes.
    server.ws_factory.buildProtocol.assert_not_called()
    server.create_application.assert_not_called()
    assert server.connections == {}
    assert refused("connect", "overload") == before + 1


def test_a_late_connect_twisted_parsed_is_refused_by_daphnes_request_the_same_way(late_loop) -> None:
    """An upgrade that came in two reads: Twisted parses it, and daphne's request refuses it."""
    channel, transport, server, _ = websocket_connection()
    data = upgrade("/event/realtime", b"Sec-WebSocket-Protocol: aws-appsync-event-ws, header-e30")

    channel.dataReceived(data[:40])
    channel.dataReceived(data[40:])

    assert transport.value() == SWITCHING
    transport.clear()
    transport.protocol.dataReceived(CONNECTION_INIT)
    assert transport.value() == REFUSAL_FRAMES
    server.ws_factory.buildProtocol.assert_not_called()
    server.create_application.assert_not_called()
    assert [state.get("disconnected") for state in server.connections.values()] == [True]


def test_a_refused_connect_that_sends_nothing_is_refused_after_the_grace_then_dropped(late_loop) -> None:
    channel, transport, _, clock = websocket_connection()
    channel.dataReceived(upgrade())
    head = transport.value()
    transport.clear()

    assert b"Sec-WebSocket-Protocol" not in head  # none offered, none chosen
    clock.advance(REJECT_GRACE_SECONDS)
    assert transport.value() == REFUSAL_FRAMES
    assert not transport.disconnecting
    clock.advance(2.0)
    assert transport.disconnecting


@override_settings(REALTIME={"CONNECT_RATE_PER_CLIENT": "1/m"})
def test_a_connect_over_its_clients_rate_is_refused_and_other_clients_go_on_to_daphne() -> None:
    client_limit = connect_gate().checks("10.0.0.1")[0]
    assert rate_limiter.local.take([client_limit], time.monotonic()) == 0  # the client's one connect
    spent, spent_transport, _, _ = websocket_connection("10.0.0.1")
    other, other_transport, other_server, _ = websocket_connection("10.0.0.2")
    protocol = daphnes_protocol(other_server)
    before = refused("connect", "rate")

    spent.dataReceived(upgrade())
    other.dataReceived(upgrade())

    assert spent_transport.value().startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    # The other connect is daphne's WebSocket protocol's to handle.
    assert_handed_to_daphnes_protocol(other_server, protocol, other_transport, upgrade())
    assert refused("connect", "rate") == before + 1


@pytest.mark.parametrize(
    "data",
    [
        upgrade(key=b"not a key"),
        upgrade().replace(b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Version: 8"),
        upgrade("/elsewhere"),  # no gate: the front door has nothing to say
    ],
)
def test_what_is_not_a_refusable_handshake_goes_on_to_daphnes_websocket_protocol(
    late_loop, data: bytes
) -> None:
    channel, transport, server, _ = websocket_connection()
    protocol = daphnes_protocol(server)
    channel.dataReceived(data)
    assert_handed_to_daphnes_protocol(server, protocol, transport, data)


@pytest.mark.parametrize(
    "data",
    [
        upgrade().replace(b"GET ", b"POST "),
        upgrade(key=b"not a key").replace(b"\r\n\r\n", b"\r\nContent-Length: 1\r\n\r\nx"),
    ],
)
def test_what_is_not_a_plain_whole_handshake_goes_on_to_daphnes_request(late_loop, data: bytes) -> None:
    channel, transport, _, _ = websocket_connection()
    with mock.patch.object(WebRequestBase, "process") as process:
        channel.dataReceived(data)
    assert transport.value() == b""
    process.assert_called_once_with()


def test_a_connect_while_the_loop_keeps_up_goes_to_daphnes_websocket_protocol_without_a_request() -> None:
    channel, transport, server, _ = websocket_connection()
    protocol = daphnes_protocol(server)
    data = upgrade("/event/realtime?header=e30")
    with mock.patch.object(overload, "on_time", return_value=True):
        channel.dataReceived(data)
    assert_handed_to_daphnes_protocol(server, protocol, transport, data, query=b"header=e30")
    # The channel's idle timeout no longer applies to the connection.
    assert channel.timeOut is None or channel._TimeoutMixin__timeoutCall is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            upgrade("/event/realtime?x=1", b"Sec-WebSocket-Protocol:  aws-appsync-event-ws "),
            (
                b"/event/realtime?x=1",
                {
                    b"host": b"127.0.0.1",
                    b"upgrade": b"websocket",
                    b"connection": b"Upgrade",
                    b"sec-websocket-key": KEY,
                    b"sec-websocket-version": b"13",
                    b"sec-websocket-protocol": b"aws-appsync-event-ws",
                },
            ),
        ),
        (upgrade()[:-1], None),  # the head still on its way
        (upgrade() + CONNECTION_INIT, None),  # a frame before the answer: read as usual
        (upgrade().replace(b"HTTP/1.1", b"HTTP/1.0"), None),
        (upgrade().replace(b"GET ", b"POST "), None),
        (upgrade().replace(b"Upgrade: websocket", b"Upgrade: h2c"), None),
        (upgrade("/x", b"Content-Length: 0"), None),
        (upgrade("/x", b"Transfer-Encoding: chunked"), None),
        (upgrade("/x", b"Host: twice"), None),  # a repeated header: daphne joins them
        (upgrade("/x", b" folded"), None),
        (upgrade("/x", b"Bad header: x"), None),
        (upgrade("/x", b"Name : value"), None),
        (upgrade("/x", b"X-Odd: a\x0bb"), None),  # a value daphne refuses
        (upgrade("/x", b"X-Big: " + b"x" * 9000), None),
    ],
)
def test_only_one_whole_plain_upgrade_is_read_from_the_raw_bytes(data: bytes, expected: Any) -> None:
    assert parse_upgrade_request(data) == expected


# -- Connections while the process is short of file descriptors ----------------------------------

TOO_MANY = (
    b'{"errors":[{"errorType":"LimitExceededException",'
    b'"message":"Too many connections right now; retry with backoff."}]}'
)


def shedding_factory() -> Any:
    """daphne's HTTP factory as ``shed_in_daphne`` installs it, on a stand-in server."""
    from daphne import server as daphne_server

    with mock.patch.object(daphne_server, "HTTPFactory", daphne_server.HTTPFactory):
        assert shed_in_daphne(FrontDoor(None, gates=[JOIN_GATE]))
        factory_class = daphne_server.HTTPFactory
    return factory_class(SimpleNamespace(server_name="daphne"))


def test_a_connection_accepted_while_descriptors_run_short_gets_429_and_is_closed() -> None:
    factory = shedding_factory()
    clock = Clock()
    before = refused("connection", "descriptors")

    with mock.patch.object(overload, "descriptors_full", return_value=True):
        with mock.patch("twisted.internet.reactor", clock):
            protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 50000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    assert clock.getDelayedCalls()  # the grace for a client that sends nothing
    protocol.dataReceived(post())
    status, headers, body = answer(transport)
    protocol.dataReceived(b"more of the same request")

    assert status == b"HTTP/1.1 429 Too Many Requests"
    assert headers == {
        b"server": b"daphne",
        b"content-type": b"application/json",
        b"content-length": str(len(TOO_MANY)).encode(),
        b"retry-after": b"1",
        b"connection": b"close",
    }
    assert body == TOO_MANY
    assert transport.value() == b""  # nothing more for the rest of the request
    assert transport.disconnecting
    assert not clock.getDelayedCalls()  # the grace timer went with the answer
    assert refused("connection", "descriptors") == before + 1


def test_a_refused_connection_that_sends_nothing_is_closed_after_the_grace() -> None:
    clock = Clock()
    protocol = refused_connection("daphne", clock)
    transport = StringTransport()
    protocol.makeConnection(transport)

    clock.advance(REJECT_GRACE_SECONDS - 0.1)
    assert not transport.disconnecting
    clock.advance(0.1)

    assert transport.disconnecting
    assert transport.value() == b""


def test_while_descriptors_remain_connections_get_daphnes_channel() -> None:
    factory = shedding_factory()

    with mock.patch.object(overload, "descriptors_full", return_value=False):
        protocol = factory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 50000))

    assert protocol._channel.requestFactory is not None
    assert type(protocol).__name__ == "_GenericHTTPChannelProtocol"
