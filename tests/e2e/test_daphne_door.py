"""The front door inside daphne, under the plain ``daphne config.asgi:application`` command line.

``config/asgi.py`` turns it on (``shed_in_daphne``): a join over its rate is refused by Twisted,
from the raw bytes when the request came whole on a keep-alive connection, from daphne's parsed
request when it came in pieces; both are the ASGI front door's 429, and the connection goes on
serving. The two are told apart by the one thing that differs on the wire: the raw-bytes answer
writes its header names in lower case, Twisted's request in its own capitalisation.

A WebSocket connect over its rate is refused by Twisted too, in the front door's shape (the
upgrade accepted, ``connection_error``, close 1000): daphne's access log, which logs every
connect an application instance handles, never hears of it.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosedOK

from .conftest import METRICS_TOKEN, DaphneFactory, DaphneServer
from .test_daphne import SUBPROTOCOL, auth, header_subprotocol

pytestmark = pytest.mark.e2e

THROTTLED = {
    "error": {"code": "throttled", "message": "Too many joins right now; retry after the indicated delay."}
}
BODY = b'{"nickname": "ada"}'


def join_request(server: DaphneServer) -> bytes:
    return (
        f"POST /api/quiz/games/NOGAME/join HTTP/1.1\r\nHost: {server.authority}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n\r\n"
    ).encode() + BODY


def read_response(conn: socket.socket) -> tuple[bytes, list[tuple[bytes, bytes]], bytes]:
    """One response: its status line, headers (names as sent) and body (``Content-Length``)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"the server closed the connection after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = [(name, value) for name, _, value in (line.partition(b": ") for line in lines)]
    length = int(next(value for name, value in headers if name.lower() == b"content-length"))
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk
        body += chunk
    assert len(body) == length, "more bytes than the response: nothing else was asked"
    return status, headers, body


def refused_total(server: DaphneServer, operation: str = "quiz.join") -> float:
    request = urllib.request.Request(
        f"{server.http_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    line = f'realtime_limit_refused_total{{operation="{operation}",reason="rate"}} '
    return sum(float(row.removeprefix(line)) for row in text.splitlines() if row.startswith(line))


def spend_the_clients_join(conn: socket.socket, server: DaphneServer) -> None:
    """The client's one join of the hour (``QUIZ_JOIN_RATE_PER_CLIENT=1/h``): through Django to the
    view, which finds no such game."""
    conn.sendall(join_request(server))
    status, _, body = read_response(conn)
    assert (status, json.loads(body)["error"]["code"]) == (b"HTTP/1.1 404 Not Found", "game_not_found")


def test_joins_over_the_rate_are_refused_by_twisted_and_the_connection_goes_on(daphne_factory: DaphneFactory):
    (server,) = daphne_factory("door", QUIZ_JOIN_RATE_PER_CLIENT="1/h")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        spend_the_clients_join(conn, server)

        # Whole, on the same keep-alive connection: answered from the raw bytes.
        conn.sendall(join_request(server))
        whole = read_response(conn)

        # In two pieces: Twisted parses it, and daphne's request answers it (no application).
        request = join_request(server)
        conn.sendall(request[:40])
        time.sleep(0.2)
        conn.sendall(request[40:])
        pieces = read_response(conn)

        # The connection still serves anything else.
        conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.authority}\r\n\r\n".encode())
        health = read_response(conn)

    for status, headers, body in (whole, pieces):
        assert status == b"HTTP/1.1 429 Too Many Requests"
        assert json.loads(body) == THROTTLED
        named = {name.lower(): value for name, value in headers}
        assert named[b"content-type"] == b"application/json"
        assert 3590 <= int(named[b"retry-after"]) <= 3600
        assert named[b"server"] == b"daphne"
    assert [name for name, _ in whole[1]][:2] == [b"date", b"server"]
    assert b"Retry-After" in [name for name, _ in pieces[1]]
    assert health[0] == b"HTTP/1.1 200 OK"
    assert refused_total(server) == 2


ACK = {"type": "connection_ack", "connectionTimeoutMs": 300000, "payload": {"connectionTimeoutMs": 300000}}
LIMITED = {
    "type": "connection_error",
    "errors": [
        {
            "errorType": "LimitExceededError",
            "errorCode": 429,
            "message": "Too many connections right now; retry with backoff.",
        }
    ],
}


async def first_frame(server: DaphneServer) -> tuple[str | None, dict[str, object], int | None]:
    """Connect as Amplify does, send ``connection_init``: the subprotocol, the first frame and,
    unless it was an ack, the close code that follows it."""
    async with connect(
        server.ws_url,
        subprotocols=[SUBPROTOCOL, header_subprotocol(auth(server))],  # type: ignore[list-item]
        proxy=None,
        open_timeout=10,
        ping_interval=None,
    ) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        first = json.loads(await ws.recv())
        if first == ACK:
            return ws.subprotocol, first, None
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()  # nothing follows the error but the close
        return ws.subprotocol, first, ws.close_code


async def test_a_connect_over_its_rate_is_refused_by_twisted_in_the_front_doors_shape(
    daphne_factory: DaphneFactory,
) -> None:
    (server,) = daphne_factory(
        "door-ws", DJANGO_SETTINGS_MODULE="tests.e2e.settings_door", PYTHONUNBUFFERED="1"
    )
    # The client's one connect of the hour: through the ASGI front door to the connection.
    assert await first_frame(server) == (SUBPROTOCOL, ACK, None)
    admitted_log = server.log_text()
    since = server.log_size()

    refused = await first_frame(server)

    assert refused == (SUBPROTOCOL, LIMITED, 1000)
    # daphne's access log has the admitted connect, and nothing of the refused one: no
    # application instance (nor autobahn protocol) was made for it.
    assert "WSCONNECTING /event/realtime" in admitted_log
    assert "WSCONNECT" not in server.log_text(since)
    assert refused_total(server, "connect") == 1
