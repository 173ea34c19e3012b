"""Structured logs (``realtime.ops.logs``, ``realtime.ops.middleware``): ids on every line, no secrets."""

from __future__ import annotations

import asyncio
import contextvars
import io
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from django.test import AsyncClient, Client, RequestFactory, override_settings

from realtime import signals
from realtime.ops.logs import (
    ContextFilter,
    JsonFormatter,
    RedactFilter,
    background_context,
    connection_id_var,
    redact,
    request_id_var,
)
from realtime.ops.middleware import RequestIdMiddleware

from .conftest import assert_closed, publish, subscribed

REPO_ROOT = Path(__file__).resolve().parents[2]
API_KEY = "rt-" + "Ab3_-" * 6 + "xy"  # the shape of realtime.store.services' keys: rt- + 32 URL-safe
JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLWJ5dGVz"


def capture() -> tuple[logging.Handler, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactFilter())
    handler.setFormatter(JsonFormatter())
    return handler, stream


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    handler, stream = capture()
    logger = logging.getLogger("realtime")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(previous)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- redaction -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"connect with {API_KEY} refused", "connect with rt-[REDACTED] refused"),
        (f"token {JWT}", "token [REDACTED]"),
        ("Authorization: Bearer abc.DEF-123_x", "Authorization: [REDACTED] [REDACTED]"),
        ("sent bearer abcdef", "sent bearer [REDACTED]"),
        (
            "{'x-api-key': 'da2-abcdef', 'host': 'example.com'}",
            "{'x-api-key': '[REDACTED]', 'host': 'example.com'}",
        ),
        (
            '{"authorization": "AWS4-HMAC-SHA256 Credential=AKID/x, Signature=ab12"}',
            '{"authorization": "[REDACTED]"}',
        ),
        ("GET /event?x-api-key=abc123&channel=/d/a", "GET /event?x-api-key=[REDACTED]&channel=/d/a"),
        ("Signature=" + "0f" * 32 + " more", "Signature=[REDACTED] more"),
        (
            "offered header-eyJob3N0Ijoi, aws-appsync-event-ws",
            "offered header-[REDACTED], aws-appsync-event-ws",
        ),
        ("Cookie: sessionid=abc123; csrftoken=zz", "Cookie: [REDACTED]; csrftoken=[REDACTED]"),
        ("x-player-token=AbCdEf", "x-player-token=[REDACTED]"),
        # Ordinary lines pass unchanged.
        ("subscribed to /default/room", "subscribed to /default/room"),
        (
            "OIDC: token refused: Signature verification failed",
            "OIDC: token refused: Signature verification failed",
        ),
        ("rt-short is not a key", "rt-short is not a key"),
    ],
)
def test_redact_masks_what_looks_like_a_credential(text, expected):
    assert redact(text) == expected


def test_a_bytes_header_pair_keeps_its_name_and_loses_an_api_key_value():
    assert redact(f"(b'x-api-key', b'{API_KEY}')") == "(b'x-api-key', b'rt-[REDACTED]')"


def test_a_json_line_redacts_the_message_its_arguments_extras_and_the_traceback(captured):
    logger = logging.getLogger("realtime.test")
    try:
        raise ValueError(f"bad key {API_KEY}")
    except ValueError:
        logger.exception(
            "refused %s with %s", {"x-api-key": API_KEY}, f"Bearer {JWT}", extra={"peer": API_KEY}
        )

    [line] = lines(captured)
    text = json.dumps(line)
    assert API_KEY not in text and JWT not in text
    assert line["message"] == "refused {'x-api-key': '[REDACTED]'} with Bearer [REDACTED]"
    assert line["peer"] == "rt-[REDACTED]"
    assert "ValueError: bad key rt-[REDACTED]" in line["exception"]
    assert line["level"] == "ERROR" and line["logger"] == "realtime.test"
    assert set(line) == {"time", "level", "logger", "message", "peer", "exception", "process"}


# -- ids -----------------------------------------------------------------------------

DB = pytest.mark.django_db(transaction=True)


@DB
async def test_every_line_of_a_connection_carries_its_connection_id(captured, connect):
    ids: list[str] = []

    async def remember(sender: Any, connection_id: str, **kwargs: Any) -> None:
        ids.append(connection_id)

    signals.client_connected.connect(remember)
    try:
        fast = await connect()
        with override_settings(REALTIME={"OUTBOUND_BUFFER_SIZE": 2}):
            slow = await connect()
    finally:
        signals.client_connected.disconnect(remember)
    await subscribed(fast, "s", "/default/*")
    await subscribed(slow, "s", "/default/*")

    # The fast connection's publish overflows the slow one: the line names the slow one.
    await publish(fast, "p", "/default/room", ['"1"', '"2"', '"3"'])
    await assert_closed(slow, 1008)

    [line] = [line for line in lines(captured) if "overflowed" in line["message"]]
    assert line["connection_id"] == ids[1] != ids[0]
    assert "request_id" not in line


@DB
async def test_an_unexpected_connect_failure_is_logged_with_the_connection_id_and_no_key(
    captured, connect, monkeypatch, api_key
):
    async def broken(**kwargs: Any) -> Any:
        raise RuntimeError(f"could not check {kwargs['credentials']}")

    monkeypatch.setattr("realtime.transport.connection.authorize", broken)
    await connect()

    [line] = [line for line in lines(captured) if line["logger"] == "realtime.transport.connection"]
    assert len(line["connection_id"]) == 32
    assert api_key not in json.dumps(line)
    assert "'x-api-key': '[REDACTED]'" in line["exception"]


def test_background_tasks_start_without_the_ids_of_whoever_started_them():
    token = connection_id_var.set("abc")
    request_token = request_id_var.set("req")
    try:
        context = background_context()
    finally:
        connection_id_var.reset(token)
        request_id_var.reset(request_token)
    assert context.run(connection_id_var.get) is None
    assert context.run(request_id_var.get) is None


def _logging_view(request: Any) -> Any:
    from django.http import HttpResponse

    logging.getLogger("realtime.test").warning("handling %s", request.path)
    return HttpResponse("ok")


async def _async_logging_view(request: Any) -> Any:
    return _logging_view(request)


@pytest.mark.parametrize(
    ("supplied", "kept"),
    [("req-123.abc:9", True), (None, False), ("bad id\nforged line", False), ("x" * 129, False)],
)
def test_the_request_id_middleware_keeps_a_valid_id_or_makes_one(captured, supplied, kept):
    headers = {"HTTP_X_REQUEST_ID": supplied} if supplied is not None else {}
    response = RequestIdMiddleware(_logging_view)(RequestFactory().get("/x", **headers))

    request_id = response["X-Request-ID"]
    assert (request_id == supplied) is kept
    if not kept:
        assert len(request_id) == 32 and int(request_id, 16) >= 0
    [line] = lines(captured)
    assert line["request_id"] == request_id and line["message"] == "handling /x"
    assert request_id_var.get() is None


async def test_the_request_id_middleware_works_for_async_views_too(captured):
    middleware = RequestIdMiddleware(_async_logging_view)
    response = await middleware(RequestFactory().get("/y", HTTP_X_REQUEST_ID="abc"))

    assert response["X-Request-ID"] == "abc"
    assert lines(captured)[0]["request_id"] == "abc"


def test_the_site_sends_the_request_id_back(db):
    response = Client().get("/healthz", headers={"X-Request-ID": "from-nginx-1"})
    assert response["X-Request-ID"] == "from-nginx-1"


@DB
async def test_an_http_publish_error_is_logged_with_its_request_id(captured, api_key, monkeypatch):
    from django.db import OperationalError

    async def down(*, name: str) -> Any:
        raise OperationalError("no database")

    monkeypatch.setattr("realtime.operations.publishing.namespace_get", down)
    response = await AsyncClient().post(
        "/event",
        data=json.dumps({"channel": "/default/room", "events": ['"hi"']}),
        content_type="application/json",
        headers={"x-api-key": api_key, "X-Request-ID": "req-42"},
    )

    assert response.status_code == 503 and response["X-Request-ID"] == "req-42"
    [line] = [line for line in lines(captured) if "database unavailable" in line["message"]]
    assert line["request_id"] == "req-42"


# -- LOG_FORMAT=json, end to end --------------------------------------------------------


def test_log_format_json_makes_the_site_log_json_lines_without_secrets():
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "LOG_FORMAT": "json",
    }
    code = (
        "import django, logging; django.setup(); "
        f"logging.getLogger('realtime.x').warning('key %s', {API_KEY!r})"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    [line] = [json.loads(text) for text in result.stderr.splitlines()]
    assert line["message"] == "key rt-[REDACTED]"
    assert line["level"] == "WARNING" and line["logger"] == "realtime.x"


async def test_a_task_a_request_starts_in_the_background_uses_the_shared_thread_not_the_request_s():
    """What ``background_context`` starts outlives the request: never the request's thread."""

    async def thread_of(context: Any) -> threading.Thread:
        return await asyncio.get_running_loop().create_task(
            sync_to_async(threading.current_thread)(), context=context
        )

    shared = await sync_to_async(threading.current_thread)()
    async with ThreadSensitiveContext():
        request_thread = await sync_to_async(threading.current_thread)()
        inherited = await thread_of(contextvars.copy_context())
        background = await thread_of(background_context())

    assert inherited is request_thread
    assert request_thread is not shared
    assert background is shared
