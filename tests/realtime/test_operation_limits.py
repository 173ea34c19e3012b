"""Rates of operations, as AppSync has them: publishes and subscribes per connection, events per
namespace; refused with ``LimitExceededException`` in each transport's shape, per namespace."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, override_settings

import realtime
from realtime.models import Namespace
from realtime.ops.metrics import metrics

from .conftest import (
    CONNECTION_ACK,
    UUID_PLACEHOLDER,
    assert_published,
    assert_sent,
    assert_silent,
    connection_init,
    publish,
    receive_frames,
    subscribe,
    subscribed,
    without_identifiers,
)
from .test_http import post_event

pytestmark = pytest.mark.django_db(transaction=True)


def publish_limited(pub_id: str) -> dict[str, object]:
    return {
        "type": "publish_error",
        "id": pub_id,
        "errors": [
            {
                "errorType": "LimitExceededException",
                "message": "Too many publishes on this connection; retry after a delay.",
            }
        ],
    }


def published(pub_id: str) -> dict[str, object]:
    return {
        "type": "publish_success",
        "id": pub_id,
        "successful": [{"identifier": UUID_PLACEHOLDER, "index": 0}],
        "failed": [],
    }


async def ready(connect) -> object:
    comm = await connect()
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ACK)
    await assert_sent(comm, {"type": "ka"})
    return comm


async def test_a_connection_over_its_publish_rate_is_refused_and_its_neighbour_is_not(connect) -> None:
    before = metrics.totals["refused", "publish:rate"]
    with override_settings(REALTIME={"PUBLISH_RATE_PER_CONNECTION": "1/m burst 2"}):
        eager, neighbour = await ready(connect), await ready(connect)
        for n in range(3):
            await publish(eager, f"p{n}", "/default/room", ['"x"'])
        # Through Redis the two accepted publishes are answered after a layer
        # round trip, the refusal at once: compared whatever their order.
        frames = sorted(await receive_frames(eager, 3), key=lambda frame: frame["id"])
        assert [without_identifiers(frame) for frame in frames] == [
            published("p0"),
            published("p1"),
            publish_limited("p2"),
        ]
        await assert_silent(eager)

        await publish(neighbour, "n0", "/default/room", ['"y"'])
        await assert_published(neighbour, "n0", [0])
    assert metrics.totals["refused", "publish:rate"] == before + 1


async def test_a_namespace_sets_its_own_publish_rate(connect, default_namespace: Namespace) -> None:
    default_namespace.publish_rate_per_connection = "1/m burst 1"
    await sync_to_async(default_namespace.save)()
    comm = await ready(connect)
    await publish(comm, "a", "/default/room", ['"x"'])
    await publish(comm, "b", "/default/room", ['"x"'])
    frames = sorted(await receive_frames(comm, 2), key=lambda frame: frame["id"])
    assert [without_identifiers(frame) for frame in frames] == [published("a"), publish_limited("b")]


async def test_a_connection_over_its_subscribe_rate_gets_subscribe_error(connect) -> None:
    with override_settings(REALTIME={"SUBSCRIBE_RATE_PER_CONNECTION": "1/m burst 2"}):
        comm = await ready(connect)
        await subscribed(comm, "s1", "/default/a")
        await subscribed(comm, "s2", "/default/b")
        await subscribe(comm, "s3", "/default/c")
        await assert_sent(
            comm,
            {
                "type": "subscribe_error",
                "id": "s3",
                "errors": [
                    {
                        "errorType": "LimitExceededException",
                        "message": "Too many subscribes on this connection; retry after a delay.",
                    }
                ],
            },
        )
        await assert_silent(comm)


async def test_events_beyond_the_namespaces_inbound_rate_get_429_in_appsyncs_shape(api_key: str) -> None:
    client = AsyncClient()
    body = {"channel": "/default/room", "events": ['"a"', '"b"', '"c"']}
    with override_settings(REALTIME={"INBOUND_EVENT_RATE": "4/m burst 4"}):
        first = await post_event(client, body, key=api_key)
        refused = await post_event(client, body, key=api_key)  # 3 more would be 6 of 4

    assert first.status_code == 200
    assert (refused.status_code, refused["Retry-After"], refused["x-amzn-ErrorType"]) == (
        429,
        "30",
        "LimitExceededException",
    )
    assert refused.json() == {
        "errors": [
            {
                "errorType": "LimitExceededException",
                "message": "Too many events published to 'default' right now; retry after a delay.",
            }
        ]
    }


async def test_an_unauthorized_publish_spends_nothing_and_server_code_is_not_counted(api_key: str) -> None:
    client = AsyncClient()
    body = {"channel": "/default/room", "events": ['"a"']}
    with override_settings(REALTIME={"INBOUND_EVENT_RATE": "1/m burst 1"}):
        unauthorized = await post_event(client, body, key="rt-wrong")
        await realtime.apublish("/default/room", ["from the server", "and again"])
        allowed = await post_event(client, body, key=api_key)
    assert (unauthorized.status_code, allowed.status_code) == (401, 200)


@pytest.mark.parametrize(
    ("rate", "valid"), [("", True), ("25/s", True), ("25/s burst 5", True), ("fast", False)]
)
def test_a_namespaces_rates_are_validated_like_the_settings(rate: str, valid: bool) -> None:
    from django.core.exceptions import ValidationError

    namespace = Namespace(name="rated", inbound_event_rate=rate, publish_rate_per_connection=rate)
    if valid:
        namespace.full_clean()
    else:
        with pytest.raises(ValidationError) as error:
            namespace.full_clean()
        assert set(error.value.message_dict) == {"inbound_event_rate", "publish_rate_per_connection"}
