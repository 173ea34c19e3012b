"""The signals server code can listen to, with their documented arguments."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from realtime import signals

from .conftest import assert_published, assert_sent, data, publish, subscribed, unsubscribe

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    log: list[tuple[str, dict[str, Any]]] = []
    names = [
        "event_published",
        "subscription_started",
        "subscription_ended",
        "client_connected",
        "client_disconnected",
    ]
    receivers = {}
    for name in names:

        def receiver(sender: Any, _name: str = name, **kwargs: Any) -> None:
            kwargs.pop("signal")
            log.append((_name, {"sender": sender, **kwargs}))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield log
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


async def test_a_connection_its_subscription_and_a_publish_send_their_signals(connect, received) -> None:
    comm = await connect()
    await subscribed(comm, "s", "/default/*")
    await publish(comm, "p", "default/room", ['{"n":1}'])
    await assert_sent(comm, data("s", '{"n":1}'))
    await assert_published(comm, "p", [0])
    await unsubscribe(comm, "s")
    await assert_sent(comm, {"type": "unsubscribe_success", "id": "s"})
    await comm.disconnect()

    names = [name for name, _ in received]
    assert names == [
        "client_connected",
        "subscription_started",
        "event_published",
        "subscription_ended",
        "client_disconnected",
    ]
    connection_id = received[0][1]["connection_id"]
    identity = received[0][1]["identity"]
    assert identity.mode == "API_KEY"
    assert received[1][1] == {
        "sender": "realtime",
        "connection_id": connection_id,
        "subscription_id": "s",
        "channel": "/default/*",
        "namespace": "default",
        "identity": received[1][1]["identity"],
    }
    assert received[2][1] == {
        "sender": "realtime",
        "channel": "/default/room",
        "namespace": "default",
        "events": [{"n": 1}],
        "identity": received[2][1]["identity"],
        "transport": "websocket",
    }
    assert received[3][1] == {
        "sender": "realtime",
        "connection_id": connection_id,
        "subscription_id": "s",
        "channel": "/default/*",
        "namespace": "default",
    }
    assert received[4][1] == {
        "sender": "realtime",
        "connection_id": connection_id,
        "identity": identity,
        "code": 1000,
    }


async def test_subscriptions_still_live_at_disconnect_end_with_it(connect, received) -> None:
    comm = await connect()
    await subscribed(comm, "a", "/default/a")
    await subscribed(comm, "b", "/default/b")
    await comm.disconnect()
    ended = sorted(kwargs["subscription_id"] for name, kwargs in received if name == "subscription_ended")
    assert ended == ["a", "b"]


async def test_a_refused_connection_sends_no_connection_signals(open_socket, received) -> None:
    comm, _ = await open_socket(subprotocols=["aws-appsync-event-ws"])
    await comm.disconnect()
    assert received == []
