"""The wire protocol against a real daphne process, with the real ``websockets`` client.

Every frame is asserted whole, every ``data`` frame exactly once, and each conversation ends by
checking that nothing more arrives (PROTOCOL §3). The server fixtures (``conftest.py``) also fail a
test whose server died or logged a ``Traceback``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import METRICS_TOKEN, VARIANT_WRITERS, DaphneServer, _checked

pytestmark = pytest.mark.e2e

SUBPROTOCOL = "aws-appsync-event-ws"
TIMEOUT = 5.0
# How long "nothing more arrives" is watched for.
SILENCE = 0.3

ACK = {"type": "connection_ack", "connectionTimeoutMs": 300000, "payload": {"connectionTimeoutMs": 300000}}
KA = {"type": "ka"}
UNAUTHORIZED = {"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}
CONNECTION_ERROR = {
    "type": "connection_error",
    "errors": [
        {
            "errorType": "UnauthorizedException",
            "errorCode": 401,
            "message": "You are not authorized to make this call.",
        }
    ],
}

# One of each JSON kind, as clients serialise them (spacing and unicode must survive untouched).
EVENTS = [
    json.dumps({"message": "Hello world!", "n": 1, "nested": {"ok": True, "none": None}}),
    json.dumps("Hola ¿qué tal? ✓", ensure_ascii=False),
    "42.5",
    json.dumps([1, "two", {"three": 3}, [4]]),
    "true",
]


@pytest.fixture(
    params=[
        "plain",
        "tls",
        "daphne-asgi-send",
        "daphne-stock",
        "uvicorn",
        "uvicorn-asgi-send",
        "uvicorn-legacy",
    ]
)
def server(request: pytest.FixtureRequest) -> Iterator[DaphneServer]:
    """The same tests over ``ws://`` and ``wss://``, and served by uvicorn (``websockets-sansio``, and its
    default legacy protocol: ``uvicorn-legacy``); frames written straight
    to the server's transport (the default) and through ASGI ``send`` (``*-asgi-send``); daphne
    with the lighter protocol of realtime.transport.server_tuning (the default) and its own
    (``daphne-stock``)."""
    if request.param in ("plain", "tls"):
        yield request.getfixturevalue("daphne_server" if request.param == "plain" else "daphne_tls_server")
    else:
        yield from _checked(request.getfixturevalue("start_variant")(request.param))


# -- helpers ----------------------------------------------------------------------


def header_subprotocol(authorization: Mapping[str, str]) -> str:
    """``header-<base64url JSON>`` without padding, as Amplify builds it (PROTOCOL §3.1)."""
    encoded = base64.urlsafe_b64encode(json.dumps(authorization).encode()).decode()
    return "header-" + encoded.rstrip("=")


def auth(server: DaphneServer, api_key: str | None = None) -> dict[str, str]:
    return {"host": server.authority, "x-api-key": api_key or server.api_key}


@asynccontextmanager
async def open_socket(
    server: DaphneServer,
    *,
    subprotocols: list[str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[ClientConnection]:
    """A WebSocket to ``/event/realtime``; by default with the key in the header subprotocol."""
    if subprotocols is None:
        subprotocols = [SUBPROTOCOL, header_subprotocol(auth(server))]
    async with connect(
        server.ws_url,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        additional_headers=dict(headers or {}),
        ssl=server.ssl_context(),
        proxy=None,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
    ) as ws:
        # Browsers fail the handshake unless the server selects the protocol (PROTOCOL §3.1).
        assert ws.subprotocol == SUBPROTOCOL
        yield ws


async def recv(ws: ClientConnection, within: float = TIMEOUT) -> dict[str, Any]:
    async with asyncio.timeout(within):
        frame = await ws.recv()
    assert isinstance(frame, str), f"expected a text frame, got {frame!r}"
    message = json.loads(frame)
    assert isinstance(message, dict)
    return message


async def recv_frames(ws: ClientConnection, count: int, within: float = TIMEOUT) -> list[dict[str, Any]]:
    """The next ``count`` frames, skipping periodic keep-alives, each within ``within`` seconds."""
    frames: list[dict[str, Any]] = []
    while len(frames) < count:
        message = await recv(ws, within)
        if message != KA:
            frames.append(message)
    return frames


async def assert_silent(ws: ClientConnection, seconds: float = SILENCE) -> None:
    """Nothing but (periodic) keep-alives arrives within ``seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while (remaining := deadline - loop.time()) > 0:
        try:
            message = await recv(ws, remaining)
        except TimeoutError:
            return
        assert message == KA, f"unexpected frame {message!r}"


async def send(ws: ClientConnection, message: Mapping[str, Any]) -> None:
    await ws.send(json.dumps(message))


async def handshake(ws: ClientConnection) -> None:
    """``connection_init`` → the whole ``connection_ack``, then the immediate ``ka`` (PROTOCOL §10)."""
    await send(ws, {"type": "connection_init"})
    assert await recv(ws) == ACK
    assert await recv(ws) == KA


async def subscribe(ws: ClientConnection, sub_id: str, channel: str, **extra: Any) -> None:
    await send(ws, {"type": "subscribe", "id": sub_id, "channel": channel, **extra})
    assert await recv_frames(ws, 1) == [{"type": "subscribe_success", "id": sub_id}]


def assert_successful(response: Mapping[str, Any], count: int, **expected: Any) -> None:
    """A publish report: ``count`` successes with fresh UUIDs, nothing failed (PROTOCOL §2.2, §3.8)."""
    successful = response.get("successful")
    assert isinstance(successful, list)
    for entry in successful:
        uuid.UUID(entry["identifier"])
    identifiers = {entry["identifier"] for entry in successful}
    assert len(identifiers) == count
    report = {key: value for key, value in response.items() if key != "successful"}
    assert report == {**expected, "failed": []}
    assert [{"index": entry["index"]} for entry in successful] == [{"index": i} for i in range(count)]
    assert all(set(entry) == {"identifier", "index"} for entry in successful)


def data_frames(sub_id: str, events: list[str]) -> list[dict[str, Any]]:
    return [{"type": "data", "id": sub_id, "event": event} for event in events]


def assert_exactly(received: list[dict[str, Any]], expected: list[dict[str, Any]]) -> None:
    """The same frames, each exactly as often (order across subscriptions is not part of the protocol)."""

    def key(frame: dict[str, Any]) -> str:
        return json.dumps(frame, sort_keys=True)

    assert Counter(map(key, received)) == Counter(map(key, expected))


def _post(server: DaphneServer, body: Any, headers: Mapping[str, str]) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(
        server.event_url, data=json.dumps(body).encode(), headers=dict(headers), method="POST"
    )
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    context = server.ssl_context()
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(request, timeout=TIMEOUT) as response:
            return response.status, {k.lower(): v for k, v in response.headers.items()}, json.load(response)
    except urllib.error.HTTPError as error:
        with error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, json.load(error)


async def http_publish(
    server: DaphneServer, channel: str, events: list[str], api_key: str | None = None
) -> tuple[int, dict[str, str], Any]:
    """``POST /event`` as Amplify sends it (PROTOCOL §10)."""
    headers = {
        "content-type": "application/json; charset=UTF-8",
        "x-api-key": api_key or server.api_key,
        "x-amz-user-agent": "e2e-test",
    }
    return await asyncio.to_thread(_post, server, {"channel": channel, "events": events}, headers)


# -- tests ------------------------------------------------------------------------


async def test_subscribe_and_publish_over_websocket_and_http(server: DaphneServer) -> None:
    room = f"/default/e2e/{server.scheme}"
    deep = f"/default/e2e/{server.scheme}/deeper/still"
    async with open_socket(server) as subscriber, open_socket(server) as publisher:
        await handshake(subscriber)
        await subscribe(subscriber, "sub-room", room, authorization=auth(server))
        # Amplify sends a legacy payload object too; extra fields are ignored (PROTOCOL §3.4).
        await subscribe(
            subscriber,
            "sub-wild",
            "/default/*",
            authorization=auth(server),
            payload={"channel": "/default/*", "extensions": {"authorization": auth(server)}},
        )

        # Publish over WebSocket: one data frame per event per matching subscription.
        await handshake(publisher)
        await send(
            publisher,
            {
                "type": "publish",
                "id": "pub-1",
                "channel": room,
                "events": EVENTS,
                "authorization": auth(server),
            },
        )
        [ack] = await recv_frames(publisher, 1)
        assert_successful(ack, len(EVENTS), type="publish_success", id="pub-1")
        received = await recv_frames(subscriber, 2 * len(EVENTS))
        assert_exactly(received, data_frames("sub-room", EVENTS) + data_frames("sub-wild", EVENTS))
        # Within one subscription, one publisher's batch arrives in order.
        assert [f["event"] for f in received if f["id"] == "sub-room"] == EVENTS

        # The wildcard matches every depth below the namespace; the concrete channel does not.
        await send(
            publisher,
            {"type": "publish", "id": "pub-2", "channel": deep, "events": ['{"deep":true}']},
        )
        [ack] = await recv_frames(publisher, 1)
        assert_successful(ack, 1, type="publish_success", id="pub-2")
        assert await recv_frames(subscriber, 1) == data_frames("sub-wild", ['{"deep":true}'])

        # Publish over HTTP, channel without the leading slash (Kotlin, Swift).
        http_events = ['{"via":"http"}', '"text"', "-7", "[]", "null"]
        status, headers, body = await http_publish(server, room.lstrip("/"), http_events)
        assert status == 200
        assert headers["content-type"] == "application/json"
        assert_successful(body, len(http_events))
        received = await recv_frames(subscriber, 2 * len(http_events))
        assert_exactly(received, data_frames("sub-room", http_events) + data_frames("sub-wild", http_events))

        # After unsubscribe only the wildcard subscription still receives.
        await send(subscriber, {"type": "unsubscribe", "id": "sub-room"})
        assert await recv_frames(subscriber, 1) == [{"type": "unsubscribe_success", "id": "sub-room"}]
        status, _, body = await http_publish(server, room, ['{"after":"unsubscribe"}'])
        assert status == 200
        assert_successful(body, 1)
        assert await recv_frames(subscriber, 1) == data_frames("sub-wild", ['{"after":"unsubscribe"}'])

        # Nothing else, ever: a duplicate or stray frame of any step above would have shown up
        # in a later step's exact comparison, or shows up here.
        await asyncio.gather(assert_silent(subscriber), assert_silent(publisher))

    server.assert_alive()


async def test_publisher_receives_its_own_events(server: DaphneServer) -> None:
    """No echo suppression: subscribe and publish on one socket (PROTOCOL §3.5)."""
    channel = f"/default/e2e/{server.scheme}/echo"
    async with open_socket(server) as ws:
        await handshake(ws)
        await subscribe(ws, "echo", channel)
        await send(ws, {"type": "publish", "id": "pub-echo", "channel": channel, "events": ['{"me":1}']})
        frames = await recv_frames(ws, 2)
        [ack] = [f for f in frames if f["type"] == "publish_success"]
        assert_successful(ack, 1, type="publish_success", id="pub-echo")
        assert [f for f in frames if f["type"] == "data"] == data_frames("echo", ['{"me":1}'])
        await assert_silent(ws)


@pytest.mark.parametrize("carrier", ["subprotocol", "upgrade-header"])
async def test_wrong_key_is_refused_with_connection_error_then_close_1000(
    server: DaphneServer, carrier: str
) -> None:
    """Bad connect credentials: accepted upgrade, ``connection_error``, close 1000 (PROTOCOL §3.1)."""
    wrong = "rt-this-key-does-not-exist"
    if carrier == "subprotocol":
        kwargs: dict[str, Any] = {"subprotocols": [SUBPROTOCOL, header_subprotocol(auth(server, wrong))]}
    else:
        kwargs = {"subprotocols": [SUBPROTOCOL], "headers": {"x-api-key": wrong}}
    async with open_socket(server, **kwargs) as ws:
        await send(ws, {"type": "connection_init"})
        assert await recv(ws) == CONNECTION_ERROR
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        assert ws.close_code == 1000


@pytest.mark.parametrize("send_init", [True, False], ids=["kotlin-init", "swift-no-init"])
async def test_credentials_in_plain_upgrade_headers(server: DaphneServer, send_init: bool) -> None:
    """Swift and Kotlin send the key as a real header on the upgrade request (PROTOCOL §3.1)."""
    headers = {
        "x-api-key": server.api_key,
        "accept": "application/json, text/javascript",
        "content-type": "application/json; charset=UTF-8",
        "content-encoding": "amz-1.0",
        "x-amz-user-agent": "aws-appsync-events-swift/e2e",
    }
    channel = f"/default/e2e/{server.scheme}/native/{'init' if send_init else 'noinit'}"
    async with open_socket(server, subprotocols=[SUBPROTOCOL], headers=headers) as ws:
        if send_init:
            await handshake(ws)
        # Swift sends subscribe straight away and with the key in the operation (uppercase UUID ids).
        sub_id = str(uuid.uuid4()).upper()
        await subscribe(ws, sub_id, channel, authorization={"x-api-key": server.api_key})
        pub_id = str(uuid.uuid4()).upper()
        # No authorization on the operation: the connection's credentials stand for it.
        await send(ws, {"type": "publish", "id": pub_id, "channel": channel, "events": ['"native"']})
        frames = await recv_frames(ws, 2)
        [ack] = [f for f in frames if f["type"] == "publish_success"]
        assert_successful(ack, 1, type="publish_success", id=pub_id)
        assert [f for f in frames if f["type"] == "data"] == data_frames(sub_id, ['"native"'])
        status, _, body = await http_publish(server, channel, ['{"from":"http"}'])
        assert status == 200
        assert_successful(body, 1)
        assert await recv_frames(ws, 1) == data_frames(sub_id, ['{"from":"http"}'])
        await assert_silent(ws)


async def test_wrong_key_on_operations_of_an_authorized_connection(server: DaphneServer) -> None:
    """Per-operation credentials are checked on their own (PROTOCOL §3.4, §3.8)."""
    wrong = auth(server, "rt-wrong")
    channel = f"/default/e2e/{server.scheme}/guarded"
    async with open_socket(server) as ws:
        await handshake(ws)
        await send(ws, {"type": "subscribe", "id": "bad-sub", "channel": channel, "authorization": wrong})
        assert await recv_frames(ws, 1) == [
            {"type": "subscribe_error", "id": "bad-sub", "errors": [UNAUTHORIZED]}
        ]
        await send(
            ws,
            {"type": "publish", "id": "bad-pub", "channel": channel, "events": ["1"], "authorization": wrong},
        )
        assert await recv_frames(ws, 1) == [
            {"type": "publish_error", "id": "bad-pub", "errors": [UNAUTHORIZED]}
        ]
        # The socket stays usable and the refused subscription receives nothing.
        await subscribe(ws, "good-sub", channel)
        status, _, body = await http_publish(server, channel, ["2"])
        assert status == 200
        assert_successful(body, 1)
        assert await recv_frames(ws, 1) == data_frames("good-sub", ["2"])
        await assert_silent(ws)


async def test_http_publish_with_wrong_key(server: DaphneServer) -> None:
    """401 with ``x-amzn-ErrorType``, which Amplify needs to name the error (PROTOCOL §2.3, §10)."""
    channel = f"/default/e2e/{server.scheme}/http-guarded"
    async with open_socket(server) as ws:
        await handshake(ws)
        await subscribe(ws, "watch", channel)
        status, headers, body = await http_publish(server, channel, ['"nope"'], api_key="rt-wrong")
        assert status == 401
        assert headers["x-amzn-errortype"] == "UnauthorizedException"
        assert body == {"errors": [UNAUTHORIZED]}
        await assert_silent(ws)


async def test_client_closing_while_replies_are_queued(server: DaphneServer) -> None:
    """A close that crosses the server's replies is routine: no Traceback in the log.

    Amplify's ``closeAll`` does this (unsubscribe, then close at once); daphne then raises
    autobahn's ``Disconnected`` for each frame still queued.
    """
    channel = f"/default/e2e/{server.scheme}/hangup"
    start = server.log_size()
    for round_ in range(5):
        async with open_socket(server) as ws:
            await handshake(ws)
            await subscribe(ws, "hangup", channel)
            for n in range(5):
                await send(
                    ws, {"type": "publish", "id": f"p{round_}-{n}", "channel": channel, "events": ["1"]}
                )
            await send(ws, {"type": "unsubscribe", "id": "hangup"})
            # Leaves without reading the replies.
    # A fresh connection is still served, and the server said nothing alarming meanwhile.
    async with open_socket(server) as ws:
        await handshake(ws)
    server.assert_alive()
    server.assert_no_traceback(since=start)


def test_server_log_has_no_traceback(server: DaphneServer) -> None:
    """Whatever ran before, on either server, left no Traceback in its log."""
    server.assert_alive()
    server.assert_no_traceback()


async def test_acks_keepalives_errors_and_data_keep_their_order(server: DaphneServer) -> None:
    """Frames the connection answers with (acks, ``ka``, errors) and the events it receives go out
    in the order they arose, whichever way the server writes them (PROTOCOL §3)."""
    channel = f"/default/e2e/{server.scheme}/order"
    async with open_socket(server) as ws:
        await handshake(ws)
        await subscribe(ws, "mine", channel)
        # Pipelined: the server handles them in one go and queues every reply in order.
        for message in (
            {"type": "publish", "id": "p1", "channel": channel, "events": ['"one"']},
            {"type": "connection_init"},
            {"type": "subscribe", "id": "bad", "channel": "no-leading-slash"},
            {"type": "publish", "id": "p2", "channel": channel, "events": ['"two"', '"three"']},
        ):
            await send(ws, message)
        frames = [await recv(ws) for _ in range(8)]
        assert frames[0] == data_frames("mine", ['"one"'])[0]
        assert_successful(frames[1], 1, type="publish_success", id="p1")
        assert frames[2:4] == [ACK, KA]
        assert frames[4]["type"] == "subscribe_error" and frames[4]["id"] == "bad"
        assert frames[5:7] == data_frames("mine", ['"two"', '"three"'])
        assert_successful(frames[7], 2, type="publish_success", id="p2")
        await assert_silent(ws)


def _metrics(server: DaphneServer) -> str:
    request = urllib.request.Request(
        f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    context = server.ssl_context()
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    with urllib.request.build_opener(*handlers).open(request, timeout=TIMEOUT) as response:
        return str(response.read().decode())


async def test_frames_are_written_the_way_the_server_was_configured(
    request: pytest.FixtureRequest, server: DaphneServer
) -> None:
    """daphne and uvicorn get frames straight to their transport unless told otherwise, so each
    parametrization of this module tests the path it names."""
    variant = {"plain": "daphne", "tls": "daphne"}.get(request.node.callspec.params["server"])
    expected = VARIANT_WRITERS[variant or request.node.callspec.params["server"]]
    async with open_socket(server) as ws:
        await handshake(ws)
    exposition = await asyncio.to_thread(_metrics, server)
    writers = {
        line.split('writer="')[1].split('"')[0]
        for line in exposition.splitlines()
        if line.startswith("realtime_connection_writer_total{") and not line.endswith(" 0.0")
    }
    assert writers == {expected}
