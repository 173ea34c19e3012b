"""The site's front door (``config/asgi.py``): joins, ``POST /event`` and WebSocket connects are
refused before Django when a rate is spent or the process is behind, in each API's own shape."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any
from unittest import mock

import pytest
from django.core.handlers.asgi import ASGIHandler
from django.db.backends.utils import CursorWrapper
from django.test import override_settings

from config.asgi import application
from quiz.admission import JOIN_GATE, admit_join
from realtime.auth.limits import rate_limiter
from realtime.ops.metrics import metrics
from realtime.transport.consumers import RealtimeConsumer
from realtime.transport.frontdoor import FrontDoor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("calm")]

THROTTLED = {
    "error": {"code": "throttled", "message": "Too many joins right now; retry after the indicated delay."}
}
EVENT_THROTTLED = {
    "errors": [
        {
            "errorType": "LimitExceededException",
            "message": "Too many requests right now; retry after the indicated delay.",
        }
    ]
}


class Untouched:
    """Counts what a refused request must never reach: Django's handler, any view, any SQL."""

    def __init__(self) -> None:
        self.django = 0
        self.queries = 0

    def __enter__(self) -> Untouched:
        handler_call, execute = ASGIHandler.__call__, CursorWrapper.execute

        async def counted_handler(handler: ASGIHandler, *args: Any) -> Any:
            self.django += 1
            return await handler_call(handler, *args)

        def counted_execute(cursor: CursorWrapper, *args: Any, **kwargs: Any) -> Any:
            self.queries += 1
            return execute(cursor, *args, **kwargs)

        self._patches = [
            mock.patch.object(ASGIHandler, "__call__", counted_handler),
            mock.patch.object(CursorWrapper, "execute", counted_execute),
        ]
        for patch in self._patches:
            patch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for patch in self._patches:
            patch.stop()


async def http(
    path: str, body: object, *, client: str = "10.0.0.1", method: str = "POST", app: Any = application
) -> dict[str, Any]:
    """One request through the site's ASGI application; the response's status, headers and body."""
    payload = json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), (b"content-type", b"application/json")],
        "client": (client, 50000),
        "server": ("testserver", 80),
    }
    messages = [{"type": "http.request", "body": payload, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 10)
    start = sent[0]
    body_bytes = b"".join(message.get("body", b"") for message in sent[1:])
    headers = {name.decode().lower(): value.decode() for name, value in start["headers"]}
    return {
        "status": start["status"],
        "headers": headers,
        "body": json.loads(body_bytes) if body_bytes else None,
    }


def refused(operation: str, reason: str) -> float:
    """What ``/metrics`` shows of ``realtime_limit_refused_total`` (and the dashboard's tally agrees)."""
    assert metrics.registry is not None
    labels = {"operation": operation, "reason": reason}
    value = metrics.registry.get_sample_value("realtime_limit_refused_total", labels) or 0.0
    assert value == metrics.totals["refused", f"{operation}:{reason}"]
    return value


async def test_a_join_over_the_rate_is_429_without_django_or_the_database(game) -> None:
    path = f"/api/quiz/games/{game.code}/join"
    before = refused("quiz.join", "rate")
    with override_settings(QUIZ={"JOIN_RATE": "100/s", "JOIN_RATE_PER_CLIENT": "1/m"}):
        # The client's one join of the minute, spent without a join (whose
        # broadcasts would query the database meanwhile).
        assert await rate_limiter.take(JOIN_GATE.checks("10.0.0.1")) == 0
        with Untouched() as untouched:
            second = await http(path, {"nickname": "bob"})

    assert (second["status"], second["body"]) == (429, THROTTLED)
    assert second["headers"]["retry-after"] == "60"
    assert second["headers"]["content-type"] == "application/json"
    assert (untouched.django, untouched.queries) == (0, 0)
    assert refused("quiz.join", "rate") == before + 1


async def test_an_overloaded_process_sheds_joins_at_once_with_retry_after_1(game, overloaded) -> None:
    before = refused("quiz.join", "overload")
    with Untouched() as untouched:
        response = await http(f"/api/quiz/games/{game.code}/join", {"nickname": "ada"})

    assert (response["status"], response["headers"]["retry-after"], response["body"]) == (429, "1", THROTTLED)
    assert (untouched.django, untouched.queries) == (0, 0)
    assert refused("quiz.join", "overload") == before + 1


async def test_an_overloaded_process_sheds_post_event_in_appsyncs_error_shape(overloaded) -> None:
    with Untouched() as untouched:
        response = await http("/event", {"channel": "/default/x", "events": ['"a"']})

    assert (response["status"], response["body"]) == (429, EVENT_THROTTLED)
    headers = response["headers"]
    assert (headers["retry-after"], headers["x-amzn-errortype"]) == ("1", "LimitExceededException")
    assert headers["access-control-allow-origin"] == "*"
    assert (untouched.django, untouched.queries) == (0, 0)


async def test_routes_without_a_gate_and_preflights_pass_through_even_when_overloaded(overloaded) -> None:
    health = await http("/healthz", None, method="GET")
    preflight = await http("/event", None, method="OPTIONS")
    assert (health["status"], preflight["status"]) == (200, 204)


class Behind:
    """The application behind a front door of the join gate alone: answers 201, remembers scopes."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.door = FrontDoor(self, gates=[JOIN_GATE])

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def test_an_admitted_join_reaches_the_app_marked_so_the_view_does_not_count_it_again() -> None:
    behind = Behind()
    with override_settings(QUIZ={"JOIN_RATE": "100/s", "JOIN_RATE_PER_CLIENT": "1/m"}):
        response = await http("/api/quiz/games/ABC123/join", {"nickname": "ada"}, app=behind.door)
        assert response["status"] == 201, response
        await admit_join(SimpleNamespace(scope=behind.scopes[0]))  # the view: no second count

    assert response["status"] == 201
    assert behind.scopes[0]["realtime.admitted"] == "quiz.join"


async def test_clients_count_apart_and_the_global_rate_counts_them_all() -> None:
    behind = Behind()
    path = "/api/quiz/games/ABC123/join"
    with override_settings(QUIZ={"JOIN_RATE": "2/m", "JOIN_RATE_PER_CLIENT": "1/m"}):
        a = await http(path, {"nickname": "a"}, client="10.0.0.1", app=behind.door)
        a_again = await http(path, {"nickname": "a2"}, client="10.0.0.1", app=behind.door)
        b = await http(path, {"nickname": "b"}, client="10.0.0.2", app=behind.door)
        c = await http(path, {"nickname": "c"}, client="10.0.0.3", app=behind.door)
    assert [r["status"] for r in (a, a_again, b, c)] == [201, 429, 201, 429]
    # A refused join is counted by neither limit: c's wait is the global one (30 s), not a's.
    assert (a_again["headers"]["retry-after"], c["headers"]["retry-after"]) == ("60", "30")
    assert len(behind.scopes) == 2


async def websocket(client: str = "10.0.0.1") -> list[dict[str, Any]]:
    """A connect through the site's application: what the server sent, up to its close."""
    scope = {
        "type": "websocket",
        "path": "/event/realtime",
        "raw_path": b"/event/realtime",
        "query_string": b"",
        "headers": [(b"host", b"testserver")],
        "subprotocols": ["aws-appsync-event-ws"],
        "client": (client, 50000),
        "server": ("testserver", 80),
    }
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    inbox.put_nowait({"type": "websocket.connect"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "websocket.accept":
            inbox.put_nowait({"type": "websocket.receive", "text": '{"type":"connection_init"}'})

    await asyncio.wait_for(application(scope, inbox.get, send), 10)
    return sent


async def test_a_connect_over_the_rate_gets_connection_error_and_never_reaches_the_consumer() -> None:
    with override_settings(REALTIME={"CONNECT_RATE": "1/m"}):
        with mock.patch.object(RealtimeConsumer, "__call__", autospec=True) as consumer:
            await websocket()  # admitted (the mocked consumer returns at once)
            assert consumer.call_count == 1
            sent = await websocket()
            assert consumer.call_count == 1

    assert sent == [
        {"type": "websocket.accept", "subprotocol": "aws-appsync-event-ws"},
        {
            "type": "websocket.send",
            "text": json.dumps(
                {
                    "type": "connection_error",
                    "errors": [
                        {
                            "errorType": "LimitExceededError",
                            "errorCode": 429,
                            "message": "Too many connections right now; retry with backoff.",
                        }
                    ],
                },
                separators=(",", ":"),
            ),
        },
        {"type": "websocket.close", "code": 1000},
    ]
