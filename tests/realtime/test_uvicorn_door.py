"""The front door inside uvicorn (``realtime.transport.uvicorn_door``): what its HTTP protocol answers itself.

A refusal the front door can decide at once is written by uvicorn's ``httptools`` protocol as
soon as the request's headers are parsed, byte for byte the ASGI front door's 429 with uvicorn's
own ``date`` and ``server``: no request cycle, no task, no application call, and the connection
serves the next request. Everything else goes on exactly as uvicorn reads it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from unittest import mock

import pytest
from django.test import override_settings
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from quiz.admission import JOIN_GATE
from realtime.auth.limits import rate_limiter
from realtime.ops.metrics import metrics
from realtime.transport import uvicorn_door
from realtime.transport.frontdoor import FrontDoor
from realtime.transport.gates import event_gate
from realtime.transport.overload import overload

from .test_daphne_door import JOIN, THROTTLED, assert_event_refusal, post

DATE = b"Fri, 04 Dec 2026 21:00:00 GMT"
REFUSAL = (
    b"HTTP/1.1 429 Too Many Requests\r\n"
    b"date: " + DATE + b"\r\nserver: uvicorn\r\n"
    b"content-type: application/json\r\ncontent-length: " + str(len(THROTTLED)).encode() + b"\r\n"
    b"retry-after: 1\r\n\r\n" + THROTTLED
)


class Transport(asyncio.Transport):
    def __init__(self, client: str) -> None:
        super().__init__()
        self.client = client
        self.written = b""
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += bytes(data)

    def taken(self) -> bytes:
        written, self.written = self.written, b""
        return written

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": (self.client, 50000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


@pytest.fixture(autouse=True)
def shedding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The protocol class sheds for the test only, put back afterwards."""
    monkeypatch.setattr(HttpToolsProtocol, "on_headers_complete", HttpToolsProtocol.on_headers_complete)
    monkeypatch.setattr(HttpToolsProtocol, uvicorn_door._SHEDDING, False, raising=False)
    monkeypatch.setattr(uvicorn_door, "_doors", [])


class App:
    """The application behind the door: records each request it gets and answers 201."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 201, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})


def connection(
    gates: list[Any], client: str = "10.0.0.1", *, access_log: bool = False
) -> tuple[HttpToolsProtocol, Transport, App]:
    """A shedding protocol on a fake connection from ``client``, its application recording."""
    app = App()
    assert uvicorn_door.shed_in_uvicorn(FrontDoor(app, gates=gates))
    assert uvicorn_door.shed_in_uvicorn(FrontDoor(app, gates=gates))  # once: the last door wins
    config = Config(
        app=app, http="httptools", ws="none", lifespan="off", log_level="warning", access_log=access_log
    )
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", DATE), (b"server", b"uvicorn")]
    protocol = HttpToolsProtocol(config, state, {}, _loop=asyncio.get_running_loop())
    transport = Transport(client)
    protocol.connection_made(transport)
    return protocol, transport, app


def refused(operation: str, reason: str) -> int:
    return metrics.totals["refused", f"{operation}:{reason}"]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_an_overloaded_process_answers_a_join_from_the_protocol_and_starts_no_cycle(overloaded) -> None:
    protocol, transport, app = connection([JOIN_GATE])
    before = refused("quiz.join", "overload")

    protocol.data_received(post())
    first = transport.taken()
    # The same connection serves the next request: refused the same way.
    protocol.data_received(post())
    second = transport.taken()
    await settle()

    assert first == second == REFUSAL
    assert protocol.tasks == set()
    assert app.paths == []
    assert not transport.closing
    assert refused("quiz.join", "overload") == before + 2


async def test_after_a_refusal_the_connection_serves_an_admitted_request(calm) -> None:
    protocol, transport, app = connection([JOIN_GATE])
    with mock.patch.object(overload, "admits", return_value=False):
        # The head first, the body in a read of its own: the body is read and dropped.
        head, _, body = post().partition(b"\r\n\r\n")
        protocol.data_received(head + b"\r\n\r\n")
        protocol.data_received(body)
    assert transport.taken() == REFUSAL

    protocol.data_received(post())
    await settle()

    assert app.paths == [JOIN]
    assert transport.taken().startswith(b"HTTP/1.1 201 Created\r\n")
    assert not transport.closing


@override_settings(QUIZ={"JOIN_RATE": "100/s", "JOIN_RATE_PER_CLIENT": "1/m"})
async def test_a_spent_rate_is_refused_with_its_retry_after_and_other_clients_are_not(calm) -> None:
    client_limit = JOIN_GATE.checks("10.0.0.1")[0]
    assert rate_limiter.local.take([client_limit], time.monotonic()) == 0  # the client's one join
    spent, spent_transport, spent_app = connection([JOIN_GATE], "10.0.0.1")
    other, other_transport, other_app = connection([JOIN_GATE], "10.0.0.2")
    before = refused("quiz.join", "rate")

    spent.data_received(post())
    other.data_received(post())
    await settle()

    assert spent_transport.taken() == REFUSAL.replace(b"retry-after: 1\r\n", b"retry-after: 60\r\n")
    assert spent_app.paths == []
    # The other client's join goes on to the application, through the ASGI front door.
    assert other_app.paths == [JOIN]
    assert other_transport.taken().startswith(b"HTTP/1.1 201 Created\r\n")
    assert refused("quiz.join", "rate") == before + 1


async def test_post_event_is_refused_in_appsyncs_shape(overloaded) -> None:
    protocol, transport, app = connection([event_gate()])

    protocol.data_received(post("/event", b'{"channel":"/default/x","events":["1"]}'))

    head, _, body = transport.taken().partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    assert_event_refusal(status, dict(line.split(b": ", 1) for line in lines), body)
    assert app.paths == []


@pytest.mark.parametrize(
    "data",
    [
        post("/healthz"),  # no gate covers it
        b"GET " + JOIN.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # a method the gate leaves alone
        post(version=b"HTTP/1.0"),  # uvicorn closes after it
        post(JOIN, b'{"nickname": "ada"}', b"Connection: close"),
    ],
)
async def test_everything_else_goes_on_to_uvicorn(overloaded, data: bytes) -> None:
    protocol, transport, app = connection([JOIN_GATE])

    protocol.data_received(data)
    await settle()

    # The application was called: the ASGI front door (not in this test's app) decides there.
    assert len(app.paths) == 1
    assert transport.taken().startswith((b"HTTP/1.1 201 Created\r\n", b"HTTP/1.0 201 Created\r\n"))


async def test_a_request_pipelined_behind_one_under_way_is_left_to_uvicorns_queue(overloaded) -> None:
    protocol, transport, app = connection([JOIN_GATE])

    protocol.data_received(post("/healthz") + post())
    # Nothing answered out of turn, before the first request's answer.
    assert transport.taken() == b""
    await settle()

    # Both reached the application in order (the ASGI front door, not in this test's app, decides there).
    assert app.paths == ["/healthz", JOIN]
    assert transport.taken().count(b"HTTP/1.1 201 Created\r\n") == 2


async def test_a_refusal_gets_uvicorns_access_log_line(overloaded) -> None:
    protocol, transport, _ = connection([JOIN_GATE], "10.0.0.9", access_log=True)

    with mock.patch.object(protocol, "access_logger") as access_logger:
        protocol.access_log = True
        protocol.data_received(post(JOIN + "?x=1"))

    access_logger.info.assert_called_once_with(
        '%s - "%s %s HTTP/%s" %d', "10.0.0.9:50000", "POST", JOIN + "?x=1", "1.1", 429
    )
    assert transport.taken() == REFUSAL


def test_without_uvicorns_httptools_protocol_nothing_is_installed() -> None:
    with mock.patch.dict("sys.modules", {uvicorn_door._HTTPTOOLS: None}):
        assert uvicorn_door.shed_in_uvicorn(FrontDoor(App(), gates=[JOIN_GATE])) is False
