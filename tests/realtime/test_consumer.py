"""The ``/event/realtime`` WebSocket endpoint, driven through the real ASGI app (PROTOCOL §3, §4, §11)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import override_settings
from django.utils import timezone

from realtime.core.paths import parse_channel
from realtime.delivery.bridge import bridge
from realtime.delivery.hub import LocalSubscription, hub
from realtime.delivery.outbox import SLOW_CONSUMER_REASON, Outbox
from realtime.models import ApiKey, Namespace
from realtime.operations.subscribing import subscription_start
from realtime.store.services import apikey_revoke
from realtime.transport import connection
from tests.realtime.conftest import (
    CONNECTION_ACK,
    CONNECTION_ERROR,
    INVALID_CHANNEL,
    KA,
    NAMESPACE_NOT_FOUND,
    SUBPROTOCOL,
    UNAUTHORIZED,
    UUID_PLACEHOLDER,
    api_key_authorization,
    assert_closed,
    assert_published,
    assert_sent,
    assert_silent,
    by_id,
    connection_init,
    data,
    header_subprotocol,
    identifiers,
    publish,
    receive_frames,
    subscribe,
    subscribed,
    unsubscribe,
)

pytestmark = pytest.mark.django_db(transaction=True)


def subscribe_error(sub_id: str, error: dict) -> dict:
    return {"type": "subscribe_error", "id": sub_id, "errors": [error]}


def publish_error(pub_id: str, error: dict) -> dict:
    return {"type": "publish_error", "id": pub_id, "errors": [error]}


@pytest.fixture
def other_namespace(default_namespace):
    return Namespace.objects.create(name="other")


# -- handshake ------------------------------------------------------------------------


async def test_the_appsync_subprotocol_is_selected_and_header_credentials_authorize(connect):
    comm = await connect()

    await subscribed(comm, "s1", "/default/room")


async def test_credentials_in_plain_upgrade_headers_authorize(open_socket, api_key):
    comm, subprotocol = await open_socket(
        subprotocols=[SUBPROTOCOL], headers=[(b"x-api-key", api_key.encode()), (b"host", b"localhost")]
    )

    assert subprotocol == SUBPROTOCOL
    await subscribed(comm, "s1", "/default/room")


async def test_header_subprotocol_may_come_first_and_carry_padding(open_socket, api_key):
    # Pick a user agent that makes the JSON need base64 padding.
    authorization = {**api_key_authorization(api_key), "x-amz-user-agent": "test"}
    while len(json.dumps(authorization).encode()) % 3 == 0:
        authorization["x-amz-user-agent"] += "x"
    padded = "header-" + base64.urlsafe_b64encode(json.dumps(authorization).encode()).decode()
    assert padded.endswith("=")
    comm, subprotocol = await open_socket(subprotocols=[padded, SUBPROTOCOL])

    assert subprotocol == SUBPROTOCOL
    await subscribed(comm, "s1", "/default/room")


async def test_no_subprotocol_is_selected_when_none_was_offered(open_socket, api_key):
    comm, subprotocol = await open_socket(headers=[(b"x-api-key", api_key.encode())])

    assert subprotocol is None
    await subscribed(comm, "s1", "/default/room")


async def test_a_bad_key_is_accepted_then_refused_after_the_first_frame(open_socket, api_key):
    authorization = api_key_authorization("rt-not-a-key")
    comm, subprotocol = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol(authorization)])

    assert subprotocol == SUBPROTOCOL
    await assert_silent(comm)
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_a_missing_key_is_refused_with_connection_error(open_socket, default_namespace):
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL])

    await subscribe(comm, "s1", "/default/room")
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_a_refused_connection_is_told_after_the_grace_period_without_any_frame(
    open_socket, default_namespace, monkeypatch
):
    monkeypatch.setattr(connection, "REJECT_GRACE_SECONDS", 0.05)
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol({"x-api-key": "wrong"})])

    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_a_refused_connection_is_never_registered_with_the_hub(open_socket, default_namespace):
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL])

    assert hub.connection_count == 0
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)


async def test_an_expired_key_is_refused(open_socket, default_namespace, make_api_key):
    key = await sync_to_async(make_api_key)()
    await sync_to_async(ApiKey.objects.update)(expires_at=timezone.now() - timedelta(seconds=1))
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol(api_key_authorization(key))])

    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_a_revoked_key_is_refused(open_socket, api_key):
    await sync_to_async(apikey_revoke)(prefix=api_key[:11])
    comm, _ = await open_socket(
        subprotocols=[SUBPROTOCOL, header_subprotocol(api_key_authorization(api_key))]
    )

    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_a_key_revoked_while_connected_closes_the_socket_saying_why(connect, api_key):
    # Revocation is live (PROTOCOL §12; tests/realtime/test_revocation.py has the rest).
    comm = await connect()
    await subscribed(comm, "s1", "/default/a")

    await sync_to_async(apikey_revoke)(prefix=api_key[:11])

    revoked = {"errorType": "UnauthorizedException", "message": "API key revoked"}
    await assert_sent(comm, {"type": "error", "errors": [revoked]})
    await assert_closed(comm, 4401)
    await assert_silent(comm)


async def test_a_header_query_parameter_is_accepted_as_a_fallback(open_socket, api_key):
    encoded = header_subprotocol(api_key_authorization(api_key)).removeprefix("header-")
    comm, _ = await open_socket(
        subprotocols=[SUBPROTOCOL], path=f"/event/realtime?header={encoded}&payload=e30"
    )

    await subscribed(comm, "s1", "/default/room")


# -- connection_init and keep-alive ---------------------------------------------------------


async def test_connection_init_is_acked_then_followed_by_a_keepalive(connect):
    comm = await connect()

    await connection_init(comm)

    await assert_sent(comm, CONNECTION_ACK)
    await assert_sent(comm, KA)
    await assert_silent(comm)


async def test_every_connection_init_is_acked(connect):
    comm = await connect()

    await connection_init(comm)
    await connection_init(comm)

    assert await receive_frames(comm, 4) == [CONNECTION_ACK, KA, CONNECTION_ACK, KA]


async def test_operations_work_without_connection_init(connect):
    comm = await connect()

    await subscribed(comm, "s1", "/default/room")
    await publish(comm, "p1", "/default/room", ['{"a":1}'])

    await assert_sent(comm, data("s1", '{"a":1}'))
    await assert_published(comm, "p1", [0])


async def test_operations_sent_right_after_connection_init_are_answered_in_order(connect):
    comm = await connect()

    await connection_init(comm)
    await subscribe(comm, "s1", "/default/room")

    assert await receive_frames(comm, 3) == [CONNECTION_ACK, KA, {"type": "subscribe_success", "id": "s1"}]


@override_settings(REALTIME={"KEEPALIVE_INTERVAL": 0.05})
async def test_keepalives_repeat_at_the_configured_interval(connect):
    comm = await connect()

    # No connection_init: the hub's timer alone sends these.
    assert await receive_frames(comm, 3, timeout=0.5) == [KA, KA, KA]


# -- subscribe / unsubscribe ----------------------------------------------------------------


@pytest.mark.parametrize(
    "channel",
    [
        "/default/*/room",
        "/*",
        "*",
        "",
        "/default//room",
        "/default/a/b/c/d/e",
        # The star counts toward the five segments.
        "/default/a/b/c/d/*",
        "/default/" + "x" * 51,
        "/default/-room",
        "/default/room-",
        "/default/ro_om",
        "/default/room\n",
    ],
)
async def test_subscribing_to_an_invalid_channel_is_refused(connect, channel):
    comm = await connect()

    await subscribe(comm, "s1", channel)

    await assert_sent(comm, subscribe_error("s1", INVALID_CHANNEL))
    assert hub.subscription_count == 0


async def test_a_trailing_slash_is_tolerated_as_the_documented_regex_allows(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room/")

    await publish(comm, "p1", "/default/room", ["1"])

    await assert_sent(comm, data("s1", "1"))


async def test_the_deepest_wildcard_has_five_segments_with_the_star(connect):
    comm = await connect()

    await subscribed(comm, "s1", "/default/a/b/c/*")
    await publish(comm, "p1", "/default/a/b/c/d", ['"deep"'])

    await assert_sent(comm, data("s1", '"deep"'))
    await assert_published(comm, "p1", [0])


async def test_subscribing_to_an_unknown_namespace_is_unauthorized_without_a_message(connect):
    comm = await connect()

    await subscribe(comm, "s1", "/nowhere/room")

    await assert_sent(comm, subscribe_error("s1", NAMESPACE_NOT_FOUND))


async def test_subscribing_with_a_bad_key_in_the_authorization_object_is_unauthorized(connect):
    comm = await connect()

    await subscribe(comm, "s1", "/default/room", authorization={"x-api-key": "rt-wrong", "host": "localhost"})

    await assert_sent(comm, subscribe_error("s1", UNAUTHORIZED))


async def test_subscribing_with_another_valid_key_in_the_authorization_object_works(connect, make_api_key):
    other = await sync_to_async(make_api_key)()
    comm = await connect()

    await subscribe(comm, "s1", "/default/room", authorization={"X-Api-Key": other})

    await assert_sent(comm, {"type": "subscribe_success", "id": "s1"})


async def test_reusing_a_live_id_for_another_channel_is_a_duplicated_operation(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await subscribe(comm, "s1", "/default/other")

    await assert_sent(
        comm,
        subscribe_error(
            "s1",
            {
                "errorType": "DuplicatedOperationError",
                "message": "Another operation with this id is already in progress",
            },
        ),
    )
    # The first subscription is untouched and the second channel gets nothing.
    await publish(comm, "p1", "/default/other", ['"no"'])
    await assert_published(comm, "p1", [0])
    await publish(comm, "p2", "/default/room", ['"yes"'])
    await assert_sent(comm, data("s1", '"yes"'))
    await assert_published(comm, "p2", [0])


async def test_repeating_a_subscribe_with_the_same_id_and_channel_is_idempotent(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await subscribed(comm, "s1", "/default/room")
    await publish(comm, "p1", "/default/room", ['"once"'])

    await assert_sent(comm, data("s1", '"once"'))
    await assert_published(comm, "p1", [0])
    await assert_silent(comm)
    assert hub.subscription_count == 1


async def test_the_same_channel_may_be_subscribed_under_several_ids(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    await subscribed(comm, "s2", "/default/room")

    await publish(comm, "p1", "/default/room", ['"twice"'])

    assert by_id(await receive_frames(comm, 2)) == [data("s1", '"twice"'), data("s2", '"twice"')]
    await assert_published(comm, "p1", [0])


async def test_the_201st_subscription_is_refused(connect):
    comm = await connect()
    for number in range(200):
        await subscribe(comm, f"s{number}", f"/default/room{number}")
    frames = await receive_frames(comm, 200)
    assert frames == [{"type": "subscribe_success", "id": f"s{number}"} for number in range(200)]

    await subscribe(comm, "s200", "/default/room200")

    await assert_sent(
        comm,
        subscribe_error(
            "s200",
            {"errorType": "MaxSubscriptionsReachedError", "message": "Max number of subscriptions reached"},
        ),
    )


@override_settings(REALTIME={"MAX_SUBSCRIPTIONS_PER_CONNECTION": 2})
async def test_the_subscription_limit_counts_live_subscriptions_only(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/a")
    await subscribed(comm, "s2", "/default/b")

    await subscribe(comm, "s3", "/default/c")
    await assert_sent(
        comm,
        subscribe_error(
            "s3",
            {"errorType": "MaxSubscriptionsReachedError", "message": "Max number of subscriptions reached"},
        ),
    )
    # A repeat of a live subscription is not a new one.
    await subscribed(comm, "s2", "/default/b")

    await unsubscribe(comm, "s1")
    await assert_sent(comm, {"type": "unsubscribe_success", "id": "s1"})
    await subscribed(comm, "s3", "/default/c")


@pytest.mark.parametrize("sub_id", ["has space", "x" * 129, "semi;colon", "é"])
async def test_subscribing_with_an_invalid_id_is_refused(connect, sub_id):
    comm = await connect()

    await subscribe(comm, sub_id, "/default/room")

    await assert_sent(
        comm, subscribe_error(sub_id, {"errorType": "BadRequestException", "message": "Invalid operation id"})
    )
    assert hub.subscription_count == 0


async def test_an_id_of_128_allowed_characters_is_accepted(connect):
    sub_id = ("aZ09-_+" * 19)[:128]
    comm = await connect()

    await subscribed(comm, sub_id, "/default/room")
    await publish(comm, "p1", "/default/room", ["1"])

    await assert_sent(comm, data(sub_id, "1"))


async def test_a_subscribe_without_an_id_is_a_subscribe_error_without_id(connect):
    comm = await connect()

    await comm.send_json_to({"type": "subscribe", "channel": "/default/room"})

    await assert_sent(
        comm,
        {"type": "error", "errors": [{"errorType": "BadRequestException", "message": "id must be a string"}]},
    )


async def test_unsubscribe_stops_delivery(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await unsubscribe(comm, "s1")
    await assert_sent(comm, {"type": "unsubscribe_success", "id": "s1"})
    await publish(comm, "p1", "/default/room", ['"gone"'])

    await assert_published(comm, "p1", [0])
    await assert_silent(comm)
    assert hub.subscription_count == 0


async def test_unsubscribing_an_unknown_id_is_an_unknown_operation(connect):
    comm = await connect()

    await unsubscribe(comm, "nope")

    await assert_sent(
        comm,
        {
            "type": "unsubscribe_error",
            "id": "nope",
            "errors": [{"errorType": "UnknownOperationError", "message": "Unknown operation id nope"}],
        },
    )


async def test_unsubscribing_twice_is_an_unknown_operation_the_second_time(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    await unsubscribe(comm, "s1")
    await assert_sent(comm, {"type": "unsubscribe_success", "id": "s1"})

    await unsubscribe(comm, "s1")

    await assert_sent(
        comm,
        {
            "type": "unsubscribe_error",
            "id": "s1",
            "errors": [{"errorType": "UnknownOperationError", "message": "Unknown operation id s1"}],
        },
    )


async def test_an_id_is_reusable_for_another_channel_after_unsubscribe(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    await unsubscribe(comm, "s1")
    await assert_sent(comm, {"type": "unsubscribe_success", "id": "s1"})

    await subscribed(comm, "s1", "/default/other")
    await publish(comm, "p1", "/default/room", ['"old"'])
    await assert_published(comm, "p1", [0])
    await publish(comm, "p2", "/default/other", ['"new"'])

    await assert_sent(comm, data("s1", '"new"'))
    await assert_published(comm, "p2", [0])


async def test_amplify_extra_fields_in_a_subscribe_are_ignored(connect, api_key):
    comm = await connect()

    await comm.send_json_to(
        {
            "type": "subscribe",
            "id": "s1",
            "channel": "/default/room",
            "authorization": {"x-api-key": api_key, "host": "localhost", "x-amz-user-agent": "aws-amplify/6"},
            "payload": {"channel": "/default/room", "extensions": {"authorization": {"x-api-key": api_key}}},
        }
    )

    await assert_sent(comm, {"type": "subscribe_success", "id": "s1"})


# -- publish ------------------------------------------------------------------------------


async def test_publish_reports_a_uuid_and_the_index_of_every_event(connect):
    comm = await connect()

    await publish(comm, "p1", "/default/room", ['{"a":1}', '"two"', "3"])

    frame = await assert_published(comm, "p1", [0, 1, 2])
    assert len(set(identifiers(frame))) == 3


async def test_publishing_six_events_is_an_invalid_input_error(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await publish(comm, "p1", "/default/room", ["1"] * 6)

    await assert_sent(
        comm,
        publish_error("p1", {"errorType": "InvalidInputError", "message": "input exceeded 5 event limit"}),
    )
    await assert_silent(comm)


async def test_publishing_no_events_is_a_bad_request(connect):
    comm = await connect()

    await publish(comm, "p1", "/default/room", [])

    await assert_sent(
        comm,
        publish_error(
            "p1", {"errorType": "BadRequestException", "message": "Input must contain at least 1 event"}
        ),
    )


@pytest.mark.parametrize("events", [[{"a": 1}], ["1", 2], [None], [["x"]]])
async def test_publishing_events_that_are_not_strings_is_a_bad_request(connect, events):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await publish(comm, "p1", "/default/room", events)

    await assert_sent(
        comm,
        publish_error(
            "p1", {"errorType": "BadRequestException", "message": "Each event must be a string holding JSON"}
        ),
    )
    await assert_silent(comm)


async def test_events_that_are_not_an_array_are_a_publish_error(connect):
    comm = await connect()

    await comm.send_json_to({"type": "publish", "id": "p1", "channel": "/default/room", "events": "1"})

    await assert_sent(
        comm, publish_error("p1", {"errorType": "BadRequestException", "message": "events must be an array"})
    )


@pytest.mark.parametrize("channel", ["/default/*", "/default/room/*", "default/*"])
async def test_publishing_to_a_wildcard_is_an_invalid_channel_format(connect, channel):
    comm = await connect()
    await subscribed(comm, "s1", "/default/*")

    await publish(comm, "p1", channel, ["1"])

    await assert_sent(comm, publish_error("p1", INVALID_CHANNEL))
    await assert_silent(comm)


async def test_publishing_to_an_unknown_namespace_is_unauthorized_without_a_message(connect):
    comm = await connect()

    await publish(comm, "p1", "/nowhere/room", ["1"])

    await assert_sent(comm, publish_error("p1", NAMESPACE_NOT_FOUND))


async def test_publishing_with_a_bad_key_in_the_authorization_object_is_unauthorized(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await publish(comm, "p1", "/default/room", ["1"], authorization={"x-api-key": "rt-wrong"})

    await assert_sent(comm, publish_error("p1", UNAUTHORIZED))
    await assert_silent(comm)


async def test_an_event_that_is_not_json_fails_alone_while_the_others_go_out(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await publish(comm, "p1", "/default/room", ['"ok"', "{not json", "2"])

    await assert_sent(comm, data("s1", '"ok"'))
    await assert_sent(comm, data("s1", "2"))
    await assert_published(
        comm,
        "p1",
        [0, 2],
        failed=[
            {
                "code": "BadRequestException",
                "identifier": UUID_PLACEHOLDER,
                "index": 1,
                "message": "Event is not valid JSON",
            }
        ],
    )
    await assert_silent(comm)


async def test_an_event_over_the_size_limit_fails_as_too_large(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    at_limit = '"' + "x" * (240 * 1024 - 2) + '"'
    too_large = '"' + "x" * (240 * 1024 - 1) + '"'

    await publish(comm, "p1", "/default/room", [too_large, at_limit])

    await assert_sent(comm, data("s1", at_limit))
    await assert_published(
        comm,
        "p1",
        [1],
        failed=[
            {
                "code": "EventTooLargeException",
                "identifier": UUID_PLACEHOLDER,
                "index": 0,
                "message": "Transformed event is larger than 240KB",
            }
        ],
    )
    await assert_silent(comm)


async def test_the_event_size_limit_counts_utf8_bytes(connect):
    comm = await connect()
    # 2 quotes + 2 bytes per "é": one byte over the limit, in far fewer characters.
    too_large = '"' + "é" * (240 * 1024 // 2 - 1) + 'x"'

    await publish(comm, "p1", "/default/room", [too_large])

    await assert_published(
        comm,
        "p1",
        [],
        failed=[
            {
                "code": "EventTooLargeException",
                "identifier": UUID_PLACEHOLDER,
                "index": 0,
                "message": "Transformed event is larger than 240KB",
            }
        ],
    )


async def test_an_event_string_is_delivered_exactly_as_published(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    event = '{ "b" : 1,\n  "a": "caf\\u00e9 é \\"quoted\\" </script>", "n": 1.0e2 }'

    await publish(comm, "p1", "/default/room", [event])

    raw = await comm.receive_from()
    assert json.loads(raw) == data("s1", event)
    await assert_published(comm, "p1", [0])


async def test_every_json_value_kind_is_a_valid_event(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    events = ['"Hola"', "1", "true", "null", "[1,2]"]

    await publish(comm, "p1", "/default/room", events)

    assert await receive_frames(comm, 5) == [data("s1", event) for event in events]
    await assert_published(comm, "p1", [0, 1, 2, 3, 4])


async def test_a_channel_without_leading_slash_reaches_the_same_subscribers(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    await publish(comm, "p1", "default/room", ["1"])

    await assert_sent(comm, data("s1", "1"))
    await assert_published(comm, "p1", [0])


async def test_channels_are_case_sensitive(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/Room")

    await publish(comm, "p1", "/default/room", ["1"])

    await assert_published(comm, "p1", [0])
    await assert_silent(comm)


# -- fan-out --------------------------------------------------------------------------------


async def test_each_matching_subscription_on_one_connection_gets_exactly_one_frame_per_event(connect):
    comm = await connect()
    await subscribed(comm, "exact", "/default/room/a")
    await subscribed(comm, "wild", "/default/*")
    await subscribed(comm, "deep", "/default/room/*")
    await subscribed(comm, "sibling", "/default/room/b")

    await publish(comm, "p1", "/default/room/a", ['"e1"', '"e2"'])

    frames = await receive_frames(comm, 6)
    assert by_id(frames) == by_id(
        [data(sub_id, event) for sub_id in ("exact", "wild", "deep") for event in ('"e1"', '"e2"')]
    )
    await assert_published(comm, "p1", [0, 1])
    await assert_silent(comm)


async def test_events_keep_their_order_within_a_subscription(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")
    await subscribed(comm, "s2", "/default/*")

    await publish(comm, "p1", "/default/room", ["1", "2", "3"])

    frames = await receive_frames(comm, 6)
    assert [frame["event"] for frame in frames if frame["id"] == "s1"] == ["1", "2", "3"]
    assert [frame["event"] for frame in frames if frame["id"] == "s2"] == ["1", "2", "3"]


async def test_subscribers_on_other_connections_get_exactly_one_frame_per_event(connect):
    publisher = await connect()
    first = await connect()
    second = await connect()
    await subscribed(first, "exact", "/default/room/a")
    await subscribed(first, "wild", "/default/*")
    await subscribed(second, "deep", "/default/room/*")
    await subscribed(second, "elsewhere", "/default/lobby")

    await publish(publisher, "p1", "/default/room/a", ['"e"'])

    await assert_published(publisher, "p1", [0])
    assert by_id(await receive_frames(first, 2)) == [data("exact", '"e"'), data("wild", '"e"')]
    await assert_sent(second, data("deep", '"e"'))
    for comm in (publisher, first, second):
        await assert_silent(comm)


async def test_a_namespace_wildcard_does_not_receive_the_namespace_channel_itself(connect):
    comm = await connect()
    await subscribed(comm, "wild", "/default/*")
    await subscribed(comm, "bare", "/default")

    await publish(comm, "p1", "/default", ['"bare"'])

    await assert_sent(comm, data("bare", '"bare"'))
    await assert_published(comm, "p1", [0])
    await assert_silent(comm)


async def test_a_wildcard_receives_channels_at_any_depth_below_it(connect):
    comm = await connect()
    await subscribed(comm, "wild", "/default/*")

    await publish(comm, "p1", "/default/a", ['"one"'])
    await assert_sent(comm, data("wild", '"one"'))
    await assert_published(comm, "p1", [0])

    await publish(comm, "p2", "/default/a/b/c/d", ['"four"'])
    await assert_sent(comm, data("wild", '"four"'))
    await assert_published(comm, "p2", [0])


async def test_a_deeper_wildcard_does_not_receive_its_parent_or_siblings(connect):
    comm = await connect()
    await subscribed(comm, "deep", "/default/room/*")

    await publish(comm, "p1", "/default/room", ["1"])
    await publish(comm, "p2", "/default/roomy/a", ["2"])
    await publish(comm, "p3", "/default/lobby/room", ["3"])

    for pub_id in ("p1", "p2", "p3"):
        await assert_published(comm, pub_id, [0])
    await assert_silent(comm)


async def test_events_in_other_namespaces_are_not_delivered(connect, other_namespace):
    comm = await connect()
    await subscribed(comm, "wild", "/default/*")
    await subscribed(comm, "room", "/default/room")

    await publish(comm, "p1", "/other/room", ["1"])
    await publish(comm, "p2", "/other", ["2"])

    await assert_published(comm, "p1", [0])
    await assert_published(comm, "p2", [0])
    await assert_silent(comm)


# -- malformed frames ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{not json", {"errorType": "BadRequestException", "message": "Message is not valid JSON"}),
        ("[1, 2]", {"errorType": "BadRequestException", "message": "Message must be a JSON object"}),
        (
            '"connection_init"',
            {"errorType": "BadRequestException", "message": "Message must be a JSON object"},
        ),
        ("{}", {"errorType": "BadRequestException", "message": "Message must have a string type"}),
        (
            '{"type": "start"}',
            {"errorType": "UnsupportedOperation", "message": "WebSocket did not understand the operation"},
        ),
    ],
)
async def test_a_malformed_frame_is_answered_with_an_error_and_the_socket_stays_usable(connect, text, error):
    comm = await connect()

    await comm.send_to(text_data=text)

    await assert_sent(comm, {"type": "error", "errors": [error]})
    await subscribed(comm, "s1", "/default/room")


async def test_an_unknown_type_with_an_id_is_answered_with_that_id(connect):
    comm = await connect()

    await comm.send_json_to({"type": "start", "id": "op1"})

    await assert_sent(
        comm,
        {
            "type": "error",
            "id": "op1",
            "errors": [
                {"errorType": "UnsupportedOperation", "message": "WebSocket did not understand the operation"}
            ],
        },
    )
    await subscribed(comm, "s1", "/default/room")


async def test_a_subscribe_with_a_mistyped_channel_is_a_subscribe_error(connect):
    comm = await connect()

    await comm.send_json_to({"type": "subscribe", "id": "s1", "channel": 5})

    await assert_sent(
        comm,
        subscribe_error("s1", {"errorType": "BadRequestException", "message": "channel must be a string"}),
    )
    await subscribed(comm, "s1", "/default/room")


async def test_a_binary_frame_is_answered_with_an_error_and_the_socket_stays_usable(connect):
    comm = await connect()

    await comm.send_to(bytes_data=b'{"type":"connection_init"}')

    await assert_sent(
        comm,
        {
            "type": "error",
            "errors": [{"errorType": "BadRequestException", "message": "Binary frames are not supported"}],
        },
    )
    await subscribed(comm, "s1", "/default/room")


@override_settings(REALTIME={"MAX_MESSAGE_SIZE": 200})
async def test_an_oversized_frame_is_answered_with_an_error_and_the_socket_stays_usable(connect):
    comm = await connect()

    await publish(comm, "p1", "/default/room", ['"' + "x" * 200 + '"'])

    await assert_sent(
        comm,
        {
            "type": "error",
            "errors": [{"errorType": "BadRequestException", "message": "Message is too large"}],
        },
    )
    await subscribed(comm, "s1", "/default/room")


# -- slow consumers ------------------------------------------------------------------------


async def test_a_subscriber_that_falls_behind_is_closed_while_the_others_get_everything(connect):
    fast = await connect()
    with override_settings(REALTIME={"OUTBOUND_BUFFER_SIZE": 3}):
        slow = await connect()
    await subscribed(fast, "s1", "/default/*")
    await subscribed(slow, "s1", "/default/*")
    events = [f'"{number}"' for number in range(5)]

    # One publish appends five frames at once: more than the slow socket's buffer holds.
    await publish(fast, "p1", "/default/room", events)

    assert await receive_frames(fast, 5) == [data("s1", event) for event in events]
    await assert_published(fast, "p1", [0, 1, 2, 3, 4])
    close = await assert_closed(slow, 1008)
    assert close["reason"] == SLOW_CONSUMER_REASON
    await assert_silent(slow)


async def test_the_outbox_of_a_socket_that_stops_reading_overflows_and_closes_it():
    """Unit level: an ASGI ``send`` that blocks, like a peer that stopped reading."""
    released = asyncio.Event()
    slow_sent: list[dict] = []
    fast_sent: list[dict] = []

    async def blocking_send(message: dict) -> None:
        await released.wait()
        slow_sent.append(message)

    async def fast_send(message: dict) -> None:
        fast_sent.append(message)

    overflowed: list[bool] = []
    slow = Outbox(blocking_send, limit=4, on_overflow=lambda: overflowed.append(True))
    fast = Outbox(fast_send, limit=4, on_overflow=lambda: overflowed.append(False))
    channel = parse_channel("/default/*", allow_wildcard=True)
    await bridge.ready()
    for outbox in (slow, fast):
        outbox.start()
        hub.connect(outbox)
        await subscription_start(LocalSubscription.create(outbox, "s1", channel))

    for number in range(20):
        sent = await bridge.fan_out(
            parse_channel("/default/room", allow_wildcard=False), [json.dumps(str(number))]
        )
        if sent is not None:  # through the channel layer (REDIS_URL): wait for it
            await sent
        await asyncio.sleep(0)

    assert overflowed == [True]
    assert slow.closed
    assert [json.loads(message["text"])["event"] for message in fast_sent] == [str(n) for n in range(20)]
    # The frame in flight goes out, then the close: the backlog was dropped.
    released.set()
    await asyncio.wait_for(slow.task, 1)
    assert slow_sent == [
        {"type": "websocket.send", "text": '{"type":"data","id":"s1","event":"0"}'},
        {"type": "websocket.close", "code": 1008, "reason": SLOW_CONSUMER_REASON},
    ]
    fast.stop()


# -- disconnect ----------------------------------------------------------------------------


async def test_after_disconnect_the_hub_holds_nothing_for_the_socket(connect):
    stays = await connect()
    await subscribed(stays, "s1", "/default/room")
    leaves = await connect()
    await subscribed(leaves, "s1", "/default/room")
    await subscribed(leaves, "s2", "/default/*")
    assert (hub.connection_count, hub.subscription_count) == (2, 3)

    await leaves.disconnect()

    assert (hub.connection_count, hub.subscription_count) == (1, 1)
    await stays.disconnect()
    assert (hub.connection_count, hub.subscription_count) == (0, 0)


async def test_a_disconnected_subscriber_is_skipped_by_later_publishes(connect):
    publisher = await connect()
    leaves = await connect()
    await subscribed(leaves, "s1", "/default/room")
    await leaves.disconnect()

    await publish(publisher, "p1", "/default/room", ["1"])

    await assert_published(publisher, "p1", [0])
