"""The bad-input catalogue: every malformed frame or request gets the protocol's error shape,
no traceback reaches the log, and the connection stays usable.

Each row is one hostile input and the exact error it must produce.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.test import AsyncClient, override_settings

from .conftest import assert_sent, subscribed

pytestmark = pytest.mark.django_db(transaction=True)


def bad_request(message: str) -> dict[str, str]:
    return {"errorType": "BadRequestException", "message": message}


NOT_JSON = bad_request("Message is not valid JSON")
NOT_OBJECT = bad_request("Message must be a JSON object")
NO_TYPE = bad_request("Message must have a string type")
UNSUPPORTED = {"errorType": "UnsupportedOperation", "message": "WebSocket did not understand the operation"}
BAD_ID = bad_request("Invalid operation id")
ID_NOT_STRING = bad_request("id must be a string")
CHANNEL_NOT_STRING = bad_request("channel must be a string")
EVENTS_NOT_ARRAY = bad_request("events must be an array")
AUTH_NOT_OBJECT = bad_request("authorization must be an object")
INVALID_CHANNEL = bad_request("Invalid Channel Format")
NOT_STRINGS = bad_request("Each event must be a string holding JSON")
NO_EVENTS = bad_request("Input must contain at least 1 event")
SIX_EVENTS = {"errorType": "InvalidInputError", "message": "input exceeded 5 event limit"}
NO_NAMESPACE = {"errorType": "UnauthorizedException"}


def error(errors: dict[str, str], op_id: str | None = None) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "error"}
    if op_id is not None:
        frame["id"] = op_id
    frame["errors"] = [errors]
    return frame


def op_error(kind: str, op_id: str, errors: dict[str, str]) -> dict[str, Any]:
    return {"type": f"{kind}_error", "id": op_id, "errors": [errors]}


def sub(channel: Any, **extra: Any) -> str:
    return json.dumps({"type": "subscribe", "id": "x", "channel": channel, **extra})


def pub(channel: Any = "/default/a", events: Any = ('"e"',), **extra: Any) -> str:
    return json.dumps(
        {
            "type": "publish",
            "id": "x",
            "channel": channel,
            "events": list(events) if isinstance(events, tuple) else events,
            **extra,
        }
    )


DEEP = "[" * 100_000 + "]" * 100_000

WEBSOCKET_CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("blank text", " ", error(NOT_JSON)),
    ("garbage", "}{", error(NOT_JSON)),
    ("truncated json", '{"type": "subscribe"', error(NOT_JSON)),
    ("json array", "[]", error(NOT_OBJECT)),
    ("json string", '"subscribe"', error(NOT_OBJECT)),
    ("json number", "42", error(NOT_OBJECT)),
    ("json null", "null", error(NOT_OBJECT)),
    ("json true", "true", error(NOT_OBJECT)),
    ("deeply nested json", DEEP, error(NOT_JSON)),
    ("no type", "{}", error(NO_TYPE)),
    ("type is a number", '{"type": 1}', error(NO_TYPE)),
    ("type is null", '{"type": null}', error(NO_TYPE)),
    ("type is an object", '{"type": {}}', error(NO_TYPE)),
    ("unknown type", '{"type": "start"}', error(UNSUPPORTED)),
    ("unknown type keeps its id", '{"type": "stop", "id": "q1"}', error(UNSUPPORTED, "q1")),
    ("server-only type", '{"type": "data", "id": "q1"}', error(UNSUPPORTED, "q1")),
    ("type in other case", '{"type": "SUBSCRIBE", "id": "x"}', error(UNSUPPORTED, "x")),
    ("subscribe without id", '{"type": "subscribe", "channel": "/default/a"}', error(ID_NOT_STRING)),
    (
        "subscribe id is a number",
        '{"type": "subscribe", "id": 7, "channel": "/default/a"}',
        error(ID_NOT_STRING),
    ),
    ("subscribe id empty", sub("/default/a", id=""), op_error("subscribe", "", BAD_ID)),
    ("subscribe id with a space", sub("/default/a", id="a b"), op_error("subscribe", "a b", BAD_ID)),
    ("subscribe id with a slash", sub("/default/a", id="a/b"), op_error("subscribe", "a/b", BAD_ID)),
    ("subscribe id too long", sub("/default/a", id="i" * 129), op_error("subscribe", "i" * 129, BAD_ID)),
    ("subscribe id unicode", sub("/default/a", id="idé"), op_error("subscribe", "idé", BAD_ID)),
    (
        "subscribe without channel",
        '{"type": "subscribe", "id": "x"}',
        op_error("subscribe", "x", CHANNEL_NOT_STRING),
    ),
    ("channel is a number", sub(5), op_error("subscribe", "x", CHANNEL_NOT_STRING)),
    ("channel is a list", sub(["default"]), op_error("subscribe", "x", CHANNEL_NOT_STRING)),
    ("channel empty", sub(""), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("channel only a slash", sub("/"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("empty segment", sub("/default//a"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("dot-dot segment", sub("/default/../a"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("segment of 51 characters", sub("/default/" + "a" * 51), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("six segments", sub("/default/a/b/c/d/e"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("underscore", sub("/default/a_b"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("hyphen at the end", sub("/default/a-"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("unicode segment", sub("/default/café"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("newline at the end", sub("/default/a\n"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("wildcard in the middle", sub("/default/*/a"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("wildcard alone", sub("/*"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("double wildcard", sub("/default/**"), op_error("subscribe", "x", INVALID_CHANNEL)),
    ("unknown namespace", sub("/nowhere/a"), op_error("subscribe", "x", NO_NAMESPACE)),
    (
        "authorization is a string",
        sub("/default/a", authorization="key"),
        op_error("subscribe", "x", AUTH_NOT_OBJECT),
    ),
    (
        "unsubscribe unknown id",
        '{"type": "unsubscribe", "id": "nope"}',
        op_error(
            "unsubscribe",
            "nope",
            {"errorType": "UnknownOperationError", "message": "Unknown operation id nope"},
        ),
    ),
    ("unsubscribe without id", '{"type": "unsubscribe"}', error(ID_NOT_STRING)),
    ("publish to a wildcard", pub("/default/*"), op_error("publish", "x", INVALID_CHANNEL)),
    ("publish with no events", pub(events=[]), op_error("publish", "x", NO_EVENTS)),
    ("publish six events", pub(events=['"e"'] * 6), op_error("publish", "x", SIX_EVENTS)),
    ("events not an array", pub(events='"e"'), op_error("publish", "x", EVENTS_NOT_ARRAY)),
    (
        "events missing",
        '{"type": "publish", "id": "x", "channel": "/default/a"}',
        op_error("publish", "x", EVENTS_NOT_ARRAY),
    ),
    ("events are objects", pub(events=[{"a": 1}]), op_error("publish", "x", NOT_STRINGS)),
    ("events are numbers", pub(events=[1, 2]), op_error("publish", "x", NOT_STRINGS)),
    ("an event is null", pub(events=['"e"', None]), op_error("publish", "x", NOT_STRINGS)),
    ("publish to an unknown namespace", pub("/nowhere/a"), op_error("publish", "x", NO_NAMESPACE)),
    ("publish channel empty", pub(""), op_error("publish", "x", INVALID_CHANNEL)),
]


@pytest.mark.parametrize(
    ("frame", "expected"), [case[1:] for case in WEBSOCKET_CASES], ids=[c[0] for c in WEBSOCKET_CASES]
)
async def test_a_bad_websocket_frame_gets_the_protocols_error_and_the_socket_stays_usable(
    connect, caplog, frame, expected
) -> None:
    comm = await connect()
    with caplog.at_level(logging.INFO):
        await comm.send_to(text_data=frame)
        await assert_sent(comm, expected)
        await subscribed(comm, "after", "/default/after")
    assert not [record for record in caplog.records if record.exc_info], "a traceback reached the log"


async def test_a_binary_frame_is_refused_like_bad_text(connect) -> None:
    comm = await connect()
    await comm.send_to(bytes_data=b'{"type":"connection_init"}')
    await assert_sent(comm, error(bad_request("Binary frames are not supported")))
    await subscribed(comm, "after", "/default/after")


async def test_an_oversized_frame_is_refused_without_being_parsed(connect) -> None:
    comm = await connect()
    with override_settings(REALTIME={"MAX_MESSAGE_SIZE": 1000}):
        await comm.send_to(text_data=pub(events=['"' + "x" * 2000 + '"']))
        await assert_sent(comm, error(bad_request("Message is too large")))
        await subscribed(comm, "after", "/default/after")


async def test_events_that_are_not_json_or_too_large_fail_alone(connect) -> None:
    comm = await connect()
    huge = json.dumps("x" * (240 * 1024))
    await comm.send_to(text_data=pub(events=["{not json", huge, '"ok"']))
    frame = await comm.receive_json_from()
    assert frame["type"] == "publish_success"
    assert [(f["index"], f["code"]) for f in frame["failed"]] == [
        (0, "BadRequestException"),
        (1, "EventTooLargeException"),
    ]
    assert [s["index"] for s in frame["successful"]] == [2]


async def test_a_flood_of_subscribe_and_unsubscribe_leaves_nothing_behind(connect) -> None:
    from realtime.delivery.hub import hub

    comm = await connect()
    for round_ in range(50):
        await comm.send_json_to({"type": "subscribe", "id": f"s{round_}", "channel": "/default/flood"})
        await comm.send_json_to({"type": "unsubscribe", "id": f"s{round_}"})
    frames = [await comm.receive_json_from() for _ in range(100)]
    assert [f["type"] for f in frames] == ["subscribe_success", "unsubscribe_success"] * 50
    assert hub.subscription_count == 0


async def test_frames_after_close_are_ignored(connect) -> None:
    comm = await connect()
    await comm.disconnect()
    # The consumer is gone; sending more must not raise inside the server.
    await comm.send_to(text_data='{"type": "subscribe", "id": "x", "channel": "/default/a"}')


HTTP_CASES: list[tuple[str, Any, str, int, dict[str, Any]]] = [
    ("invalid json", "{nope", "application/json", 400, bad_request("Request body is not valid JSON")),
    ("empty body", "", "application/json", 400, bad_request("channel must be a string")),
    ("json array", "[]", "application/json", 400, bad_request("Request body must be a JSON object")),
    ("json string", '"x"', "application/json", 400, bad_request("Request body must be a JSON object")),
    ("no channel", '{"events": ["1"]}', "application/json", 400, bad_request("channel must be a string")),
    (
        "channel a number",
        '{"channel": 1, "events": ["1"]}',
        "application/json",
        400,
        bad_request("channel must be a string"),
    ),
    (
        "no events",
        '{"channel": "/default/a"}',
        "application/json",
        400,
        bad_request("events must be an array"),
    ),
    (
        "events a string",
        '{"channel": "/default/a", "events": "1"}',
        "application/json",
        400,
        bad_request("events must be an array"),
    ),
    ("zero events", '{"channel": "/default/a", "events": []}', "application/json", 400, NO_EVENTS),
    (
        "six events",
        json.dumps({"channel": "/default/a", "events": ["1"] * 6}),
        "application/json",
        400,
        bad_request("Input exceeded 5 event limit"),
    ),
    (
        "events objects",
        '{"channel": "/default/a", "events": [{"a": 1}]}',
        "application/json",
        400,
        NOT_STRINGS,
    ),
    ("wildcard", '{"channel": "/default/*", "events": ["1"]}', "application/json", 400, INVALID_CHANNEL),
    (
        "six segments",
        '{"channel": "/default/a/b/c/d/e", "events": ["1"]}',
        "application/json",
        400,
        INVALID_CHANNEL,
    ),
    (
        "empty segment",
        '{"channel": "/default//a", "events": ["1"]}',
        "application/json",
        400,
        INVALID_CHANNEL,
    ),
    (
        "unicode channel",
        '{"channel": "/default/\\u00e9", "events": ["1"]}',
        "application/json",
        400,
        INVALID_CHANNEL,
    ),
    (
        "unknown namespace",
        '{"channel": "/nowhere/a", "events": ["1"]}',
        "application/json",
        401,
        NO_NAMESPACE,
    ),
    ("deeply nested", DEEP, "application/json", 400, bad_request("Request body is not valid JSON")),
]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "expected"),
    [c[1:] for c in HTTP_CASES],
    ids=[c[0] for c in HTTP_CASES],
)
async def test_a_bad_http_publish_gets_the_protocols_error_body(
    api_key, caplog, body, content_type, status, expected
):
    with caplog.at_level(logging.INFO):
        response = await AsyncClient().post(
            "/event", body, content_type=content_type, headers={"x-api-key": api_key}
        )
    assert response.status_code == status
    assert response.json() == {"errors": [expected]}
    assert response["x-amzn-ErrorType"] == expected["errorType"]
    assert not [record for record in caplog.records if record.exc_info], "a traceback reached the log"


@pytest.mark.parametrize(
    ("method", "content_type", "status"),
    [
        ("get", None, 405),
        ("put", "application/json", 405),
        ("delete", None, 405),
        ("post", "text/plain", 415),
    ],
)
async def test_wrong_methods_and_content_types_are_refused_in_the_same_shape(
    api_key, method, content_type, status
):
    kwargs: dict[str, Any] = {"headers": {"x-api-key": api_key}}
    if content_type:
        kwargs["content_type"] = content_type
    response = (
        await getattr(AsyncClient(), method)("/event", "x", **kwargs)
        if content_type
        else await getattr(AsyncClient(), method)("/event", **kwargs)
    )
    assert response.status_code == status
    body = response.json()
    assert list(body) == ["errors"] and body["errors"][0]["errorType"] == "BadRequestException"
