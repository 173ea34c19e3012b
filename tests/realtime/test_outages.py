"""A database outage is a clear, retryable error in the protocol's shape: never a 500 or a crash."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import AsyncClient

from .conftest import assert_sent, publish, subscribe, subscribed

pytestmark = pytest.mark.django_db(transaction=True)

UNAVAILABLE = {
    "errorType": "ServiceUnavailable",
    "message": "The service is temporarily unavailable, try again.",
}


def database_down():
    return mock.patch(
        "realtime.store.selectors._namespace_load", side_effect=OperationalError("server closed")
    )


async def test_an_http_publish_during_a_database_outage_is_503_with_retry_after(api_key) -> None:
    with database_down():
        response = await AsyncClient().post(
            "/event",
            {"channel": "/default/room", "events": ['"hi"']},
            content_type="application/json",
            headers={"x-api-key": api_key},
        )
    assert response.status_code == 503
    assert response["Retry-After"] == "1"
    assert response["x-amzn-ErrorType"] == "ServiceUnavailable"
    assert response.json() == {"errors": [UNAVAILABLE]}


async def test_websocket_operations_during_a_database_outage_fail_cleanly_and_the_socket_survives(
    connect,
) -> None:
    comm = await connect()
    with database_down():
        await subscribe(comm, "s", "/default/room")
        await assert_sent(comm, {"type": "subscribe_error", "id": "s", "errors": [UNAVAILABLE]})
        await publish(comm, "p", "/default/room", ['"hi"'])
        await assert_sent(comm, {"type": "publish_error", "id": "p", "errors": [UNAVAILABLE]})
    # The database is back: the same socket works.
    await subscribed(comm, "s", "/default/room")


async def test_a_publish_whose_event_published_receiver_meets_a_database_outage_is_retryable(connect) -> None:
    from realtime import signals

    async def receiver(**kwargs) -> None:
        raise OperationalError("server closed")

    comm = await connect()
    await subscribed(comm, "s", "/default/room")
    signals.event_published.connect(receiver, dispatch_uid="outage-test")
    try:
        await publish(comm, "p", "/default/room", ['"hi"'])
        # The event went out; the publisher learns that the rest of the publish did not finish.
        await assert_sent(comm, {"type": "data", "id": "s", "event": '"hi"'})
        await assert_sent(comm, {"type": "publish_error", "id": "p", "errors": [UNAVAILABLE]})
    finally:
        signals.event_published.disconnect(dispatch_uid="outage-test")
    await publish(comm, "p2", "/default/room", ['"again"'])
    await assert_sent(comm, {"type": "data", "id": "s", "event": '"again"'})
