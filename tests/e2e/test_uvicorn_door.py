"""The front door inside uvicorn, under the plain ``uvicorn config.asgi:application`` command line.

``config/asgi.py`` turns it on (``shed_in_uvicorn``): a join over its rate is answered by
uvicorn's HTTP protocol with the front door's 429 as soon as its headers are read, and the
kept-alive connection goes on serving (``tests/realtime/test_uvicorn_door.py`` shows no request
cycle is started for it).
"""

from __future__ import annotations

import json
import socket

import pytest

from .conftest import DaphneFactory
from .test_daphne_door import THROTTLED, join_request, read_response, refused_total, spend_the_clients_join

pytestmark = pytest.mark.e2e


def test_joins_over_the_rate_are_refused_by_uvicorn_and_the_connection_goes_on(daphne_factory: DaphneFactory):
    (server,) = daphne_factory("uvicorn-door", server_name="uvicorn", QUIZ_JOIN_RATE_PER_CLIENT="1/h")
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as conn:
        spend_the_clients_join(conn, server)

        # Whole, then its head and body apart: both refused on the same keep-alive connection.
        conn.sendall(join_request(server))
        whole = read_response(conn)
        head, _, body = join_request(server).partition(b"\r\n\r\n")
        conn.sendall(head + b"\r\n\r\n")
        conn.sendall(body)
        pieces = read_response(conn)

        # The connection still serves anything else.
        conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: {server.authority}\r\n\r\n".encode())
        health = read_response(conn)

    for status, headers, body in (whole, pieces):
        assert status == b"HTTP/1.1 429 Too Many Requests"
        assert json.loads(body) == THROTTLED
        assert [name for name, _ in headers] == [
            b"date",
            b"server",
            b"content-type",
            b"content-length",
            b"retry-after",
        ]
        named = dict(headers)
        assert (named[b"server"], named[b"content-type"]) == (b"uvicorn", b"application/json")
        assert 3590 <= int(named[b"retry-after"]) <= 3600
    assert health[0] == b"HTTP/1.1 200 OK"
    assert refused_total(server) == 2
