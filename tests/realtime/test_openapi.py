"""``POST /event`` answers as the OpenAPI document says, success and errors alike."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError
from django.test import AsyncClient, override_settings

from tests.openapi import assert_documented
from tests.realtime.conftest import UUID_PLACEHOLDER, without_identifiers

pytestmark = pytest.mark.django_db(transaction=True)

CORS = "*"


async def post_event(body: Any, *, key: str | None = None, content_type: str = "application/json") -> Any:
    headers = {"x-api-key": key} if key else {}
    return await AsyncClient().post("/event", body, content_type=content_type, headers=headers)


def error(error_type: str, message: str | None = None) -> dict[str, Any]:
    entry = {"errorType": error_type}
    if message is not None:
        entry["message"] = message
    return {"errors": [entry]}


async def test_a_publish_with_an_event_too_large_is_the_documented_200(api_key) -> None:
    too_large = '"' + "x" * (240 * 1024) + '"'
    response = await post_event({"channel": "/default/room", "events": [too_large, "1"]}, key=api_key)

    assert (response.status_code, response["Access-Control-Allow-Origin"]) == (200, CORS)
    assert without_identifiers(response.json()) == {
        "failed": [
            {
                "code": "EventTooLargeException",
                "identifier": UUID_PLACEHOLDER,
                "index": 0,
                "message": "Transformed event is larger than 240KB",
            }
        ],
        "successful": [{"identifier": UUID_PLACEHOLDER, "index": 1}],
    }
    assert_documented(response, "POST", "/event")


NO_EVENTS = error("BadRequestException", "Input must contain at least 1 event")
UNAUTHORIZED = error("UnauthorizedException", "You are not authorized to make this call.")


@pytest.mark.parametrize(
    ("body", "key", "status", "expected"),
    [
        ({"channel": "/default/room", "events": []}, True, 400, NO_EVENTS),
        ({"channel": "/default/room", "events": ["1"]}, False, 401, UNAUTHORIZED),
        ({"channel": "/nowhere/room", "events": ["1"]}, True, 401, error("UnauthorizedException")),
    ],
    ids=["no events", "no key", "unknown namespace"],
)
async def test_refusals_are_the_documented_errors(api_key, body, key, status, expected) -> None:
    response = await post_event(body, key=api_key if key else None)

    assert (response.status_code, response.json()) == (status, expected)
    assert response["x-amzn-ErrorType"] == expected["errors"][0]["errorType"]
    assert not response.has_header("Retry-After")
    assert_documented(response, "POST", "/event")


async def test_a_refused_media_type_is_the_documented_415(api_key) -> None:
    response = await post_event("channel=/default/room", key=api_key, content_type="text/plain")

    assert (response.status_code, response.json()) == (
        415,
        error("BadRequestException", 'Unsupported media type "text/plain" in request.'),
    )
    assert_documented(response, "POST", "/event")


async def test_a_wrong_method_is_the_documented_405_with_allow() -> None:
    response = await AsyncClient().put("/event", "{}", content_type="application/json")

    assert (response.status_code, response.json()) == (
        405,
        error("BadRequestException", 'Method "PUT" not allowed.'),
    )
    assert (response["Allow"], response["x-amzn-ErrorType"]) == ("POST, OPTIONS", "BadRequestException")
    assert_documented(response, "POST", "/event")


async def test_a_body_larger_than_django_reads_is_the_documented_413(api_key) -> None:
    with override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=100):
        response = await post_event({"channel": "/default/room", "events": ["x" * 200]}, key=api_key)

    assert (response.status_code, response.json()) == (
        413,
        error("BadRequestException", "Request body is too large."),
    )
    assert_documented(response, "POST", "/event")


async def test_guessing_keys_is_the_documented_429_with_retry_after(api_key) -> None:
    with override_settings(REALTIME={"AUTH_FAILURE_RATE": "1/m"}):
        await post_event({"channel": "/default/room", "events": ["1"]}, key="rt-guess")
        response = await post_event({"channel": "/default/room", "events": ["1"]}, key=api_key)

    assert (response.status_code, response["Retry-After"], response.json()) == (
        429,
        "1",
        error("LimitExceededError", "Too many failed authorizations from this address; retry later."),
    )
    assert_documented(response, "POST", "/event")


async def test_a_database_outage_is_the_documented_503_with_retry_after(api_key) -> None:
    with mock.patch("realtime.store.selectors._namespace_load", side_effect=OperationalError("gone")):
        response = await post_event({"channel": "/default/room", "events": ["1"]}, key=api_key)

    assert (response.status_code, response["Retry-After"], response.json()) == (
        503,
        "1",
        error("ServiceUnavailable", "The service is temporarily unavailable, try again."),
    )
    assert_documented(response, "POST", "/event")


async def test_an_unexpected_fault_is_the_documented_500_and_is_logged(api_key, caplog) -> None:
    with mock.patch("realtime.transport.http.publish", side_effect=KeyError("bug")):
        response = await post_event({"channel": "/default/room", "events": ["1"]}, key=api_key)

    assert (response.status_code, response.json()) == (
        500,
        error("InternalFailure", "An internal error occurred."),
    )
    assert [record.message for record in caplog.records if record.exc_info] == [
        "unexpected error in POST /event"
    ]
    assert_documented(response, "POST", "/event")
