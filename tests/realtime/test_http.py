"""``POST /event``: HTTP publish (PROTOCOL §2)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import AsyncClient

from tests.realtime.conftest import (
    UUID_PLACEHOLDER,
    assert_published,
    assert_sent,
    assert_silent,
    data,
    publish,
    subscribed,
    without_identifiers,
)

pytestmark = pytest.mark.django_db(transaction=True)

UNAUTHORIZED_BODY = {
    "errors": [{"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}]
}


@pytest.fixture
def client() -> AsyncClient:
    return AsyncClient()


async def post_event(
    client: AsyncClient,
    body: Any,
    *,
    key: str | None = None,
    content_type: str = "application/json",
    headers: dict[str, str] | None = None,
) -> Any:
    """POST /event the way Amplify does: a JSON body and the key in ``x-api-key``."""
    all_headers = dict(headers or {})
    if key is not None:
        all_headers["x-api-key"] = key
    payload = body if isinstance(body, str | bytes) else json.dumps(body)
    return await client.post("/event", data=payload, content_type=content_type, headers=all_headers)


def assert_error_response(response: Any, status: int, body: dict[str, Any]) -> None:
    """A non-2xx answer in the AppSync shape: JSON ``errors`` and ``x-amzn-ErrorType``."""
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    assert response.json() == body
    assert response["x-amzn-ErrorType"] == body["errors"][0]["errorType"]
    assert response["Access-Control-Allow-Origin"] == "*"


# -- success ----------------------------------------------------------------------------


async def test_a_publish_answers_200_with_both_arrays(client, api_key):
    response = await post_event(
        client, {"channel": "/default/room", "events": ['{"a":1}', '"b"']}, key=api_key
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert without_identifiers(response.json()) == {
        "failed": [],
        "successful": [
            {"identifier": UUID_PLACEHOLDER, "index": 0},
            {"identifier": UUID_PLACEHOLDER, "index": 1},
        ],
    }


async def test_a_content_type_with_a_charset_is_accepted(client, api_key):
    response = await post_event(
        client,
        {"channel": "default/room", "events": ["1"]},
        key=api_key,
        content_type="application/json; charset=UTF-8",
    )

    assert response.status_code == 200
    assert without_identifiers(response.json()) == {
        "failed": [],
        "successful": [{"identifier": UUID_PLACEHOLDER, "index": 0}],
    }


async def test_an_event_that_is_not_json_is_reported_in_failed_with_status_200(client, api_key):
    response = await post_event(client, {"channel": "/default/room", "events": ["{nope", "1"]}, key=api_key)

    assert response.status_code == 200
    assert without_identifiers(response.json()) == {
        "failed": [
            {
                "code": "BadRequestException",
                "identifier": UUID_PLACEHOLDER,
                "index": 0,
                "message": "Event is not valid JSON",
            }
        ],
        "successful": [{"identifier": UUID_PLACEHOLDER, "index": 1}],
    }


async def test_an_http_publish_is_delivered_to_websocket_subscribers(client, api_key, connect):
    comm = await connect()
    await subscribed(comm, "exact", "/default/room")
    await subscribed(comm, "wild", "/default/*")
    event = '{"msg": "from http", "n": [1, 2]}'

    response = await post_event(client, {"channel": "/default/room", "events": [event]}, key=api_key)

    assert response.status_code == 200
    await assert_sent(comm, data("exact", event))
    await assert_sent(comm, data("wild", event))
    await assert_silent(comm)


async def test_a_failed_http_publish_delivers_nothing(client, api_key, connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    response = await post_event(client, {"channel": "/default/room", "events": ["1"] * 6}, key=api_key)

    assert response.status_code == 400
    await assert_silent(comm)


async def test_an_http_publish_and_a_websocket_publish_reach_the_same_subscriber(client, api_key, connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await post_event(client, {"channel": "/default/room", "events": ['"http"']}, key=api_key)
    await publish(comm, "p1", "/default/room", ['"ws"'])

    await assert_sent(comm, data("s1", '"http"'))
    await assert_sent(comm, data("s1", '"ws"'))
    await assert_published(comm, "p1", [0])


# -- authorization ----------------------------------------------------------------------------


async def test_a_missing_key_is_401_unauthorized(client, api_key):
    response = await post_event(client, {"channel": "/default/room", "events": ["1"]})

    assert_error_response(response, 401, UNAUTHORIZED_BODY)


async def test_a_wrong_key_is_401_unauthorized(client, api_key):
    response = await post_event(client, {"channel": "/default/room", "events": ["1"]}, key="rt-wrong")

    assert_error_response(response, 401, UNAUTHORIZED_BODY)


async def test_an_unknown_namespace_is_401_without_a_message(client, api_key):
    response = await post_event(client, {"channel": "/nowhere/room", "events": ["1"]}, key=api_key)

    assert_error_response(response, 401, {"errors": [{"errorType": "UnauthorizedException"}]})


async def test_cookies_do_not_stand_in_for_a_key(client, api_key):
    client.cookies["x-api-key"] = api_key

    response = await post_event(client, {"channel": "/default/room", "events": ["1"]})

    assert_error_response(response, 401, UNAUTHORIZED_BODY)


# -- bad requests ----------------------------------------------------------------------------


async def test_six_events_are_400_with_the_http_wording(client, api_key):
    response = await post_event(client, {"channel": "/default/room", "events": ["1"] * 6}, key=api_key)

    assert_error_response(
        response,
        400,
        {"errors": [{"errorType": "BadRequestException", "message": "Input exceeded 5 event limit"}]},
    )


async def test_no_events_are_400(client, api_key):
    response = await post_event(client, {"channel": "/default/room", "events": []}, key=api_key)

    assert_error_response(
        response,
        400,
        {"errors": [{"errorType": "BadRequestException", "message": "Input must contain at least 1 event"}]},
    )


@pytest.mark.parametrize("channel", ["/default/*", "/default/a/b/c/d/e", "/default/" + "x" * 51, "/"])
async def test_an_invalid_or_wildcard_channel_is_400_invalid_channel_format(client, api_key, channel):
    response = await post_event(client, {"channel": channel, "events": ["1"]}, key=api_key)

    assert_error_response(
        response, 400, {"errors": [{"errorType": "BadRequestException", "message": "Invalid Channel Format"}]}
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "Request body is not valid JSON"),
        ("[1, 2]", "Request body must be a JSON object"),
        ('"text"', "Request body must be a JSON object"),
        ("{}", "channel must be a string"),
        ('{"events": ["1"]}', "channel must be a string"),
        ('{"channel": 5, "events": ["1"]}', "channel must be a string"),
        ('{"channel": "/default/room"}', "events must be an array"),
        ('{"channel": "/default/room", "events": "1"}', "events must be an array"),
        ('{"channel": "/default/room", "events": [1]}', "Each event must be a string holding JSON"),
    ],
)
async def test_a_malformed_body_is_400_in_the_appsync_shape(client, api_key, body, message):
    response = await post_event(client, body, key=api_key)

    assert_error_response(
        response, 400, {"errors": [{"errorType": "BadRequestException", "message": message}]}
    )


async def test_an_empty_body_is_400_in_the_appsync_shape(client, api_key):
    response = await post_event(client, "", key=api_key)

    assert_error_response(
        response,
        400,
        {"errors": [{"errorType": "BadRequestException", "message": "channel must be a string"}]},
    )


async def test_a_wrong_content_type_is_415_in_the_appsync_shape(client, api_key):
    response = await post_event(
        client, '{"channel": "/default/room", "events": ["1"]}', key=api_key, content_type="text/plain"
    )

    assert_error_response(
        response,
        415,
        {
            "errors": [
                {
                    "errorType": "BadRequestException",
                    "message": 'Unsupported media type "text/plain" in request.',
                }
            ]
        },
    )


async def test_get_is_405_in_the_appsync_shape(client):
    response = await client.get("/event")

    assert_error_response(
        response,
        405,
        {"errors": [{"errorType": "BadRequestException", "message": 'Method "GET" not allowed.'}]},
    )


# -- CORS ------------------------------------------------------------------------------------


async def test_a_preflight_is_answered_204_with_cors_headers(client):
    response = await client.options(
        "/event",
        headers={
            "Origin": "https://app.example.com",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )

    assert response.status_code == 204
    assert response.content == b""
    assert response["Access-Control-Allow-Origin"] == "*"
    assert "POST" in response["Access-Control-Allow-Methods"]
    allowed = {name.strip() for name in response["Access-Control-Allow-Headers"].split(",")}
    assert {
        "content-type",
        "x-api-key",
        "authorization",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-user-agent",
        "x-amz-content-sha256",
    } <= allowed
    assert "x-amzn-ErrorType" in response["Access-Control-Expose-Headers"]


async def test_a_successful_publish_carries_cors_headers(client, api_key):
    response = await post_event(client, {"channel": "/default/room", "events": ["1"]}, key=api_key)

    assert response["Access-Control-Allow-Origin"] == "*"
