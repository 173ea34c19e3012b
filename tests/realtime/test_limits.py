"""Connection storms and credential guessing are refused cleanly, in the protocol's shape."""

from __future__ import annotations

import pytest
from django.core.checks import run_checks
from django.test import AsyncClient, override_settings

from .conftest import (
    CONNECTION_ACK,
    SUBPROTOCOL,
    api_key_authorization,
    assert_closed,
    assert_sent,
    header_subprotocol,
)

pytestmark = pytest.mark.django_db(transaction=True)

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


async def test_connections_beyond_the_connect_rate_get_a_retryable_connection_error(
    open_socket, api_key
) -> None:
    subprotocols = [SUBPROTOCOL, header_subprotocol(api_key_authorization(api_key))]
    with override_settings(REALTIME={"CONNECT_RATE": "3/m"}):
        accepted = []
        for _ in range(3):
            comm, _ = await open_socket(subprotocols=subprotocols)
            await comm.send_json_to({"type": "connection_init"})
            await assert_sent(comm, CONNECTION_ACK)
            accepted.append(comm)
        refused, _ = await open_socket(subprotocols=subprotocols)
        await refused.send_json_to({"type": "connection_init"})
        await assert_sent(refused, LIMITED)
        await assert_closed(refused, 1000)
    # The accepted connections are unaffected.
    await accepted[0].send_json_to({"type": "subscribe", "id": "s", "channel": "/default/a"})
    await assert_sent(accepted[0], {"type": "ka"})
    await assert_sent(accepted[0], {"type": "subscribe_success", "id": "s"})


async def publish(key: str, client: AsyncClient) -> tuple[int, dict]:
    response = await client.post(
        "/event",
        {"channel": "/default/room", "events": ['"x"']},
        content_type="application/json",
        headers={"x-api-key": key},
    )
    return response.status_code, response.json()


async def test_guessing_keys_gets_an_address_refused_for_the_window(api_key) -> None:
    client = AsyncClient()
    with override_settings(REALTIME={"AUTH_FAILURE_RATE": "5/m"}):
        statuses = [(await publish(f"rt-guess-{i}", client))[0] for i in range(5)]
        assert statuses == [401] * 5
        status, body = await publish(api_key, client)
        assert (status, body) == (
            429,
            {
                "errors": [
                    {
                        "errorType": "LimitExceededError",
                        "message": "Too many failed authorizations from this address; retry later.",
                    }
                ]
            },
        )


def test_bad_rates_are_system_check_errors() -> None:
    with override_settings(REALTIME={"CONNECT_RATE": "fast", "AUTH_FAILURE_RATE": "9/d"}):
        ids = [message.id for message in run_checks() if message.id == "realtime.E007"]
    assert ids == ["realtime.E007", "realtime.E007"]
