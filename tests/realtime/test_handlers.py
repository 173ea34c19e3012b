"""on_publish / on_subscribe / after_publish handlers through the real protocol (PROTOCOL §6)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, override_settings

from realtime import handlers
from realtime.handlers import HandlerContext, HandlerKind, OutgoingEvent
from realtime.models import Namespace

from .conftest import (
    UUID_PLACEHOLDER,
    assert_published,
    assert_sent,
    assert_silent,
    data,
    publish,
    subscribe,
    subscribed,
    without_identifiers,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def chat(default_namespace: Namespace) -> Namespace:
    return Namespace.objects.create(name="chat")


@pytest.fixture
def register() -> Iterator[Callable[[HandlerKind, str, Any], None]]:
    registered: list[tuple[HandlerKind, str]] = []

    def register_(kind: HandlerKind, name: str, fn: Any) -> None:
        decorator = {
            HandlerKind.PUBLISH: handlers.on_publish,
            HandlerKind.SUBSCRIBE: handlers.on_subscribe,
            HandlerKind.AFTER_PUBLISH: handlers.after_publish,
        }[kind]
        decorator(name)(fn)
        registered.append((kind, name))

    yield register_
    for kind, name in registered:
        handlers.unregister(kind, name)


async def test_without_a_handler_events_go_out_exactly_as_published(connect, chat) -> None:
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['{ "spaced" : 1 }'])
    await assert_sent(comm, data("s", '{ "spaced" : 1 }'))
    await assert_published(comm, "p", [0])


async def test_on_publish_filters_events_and_reports_the_dropped_ones_as_accepted(
    connect, chat, register
) -> None:
    register(HandlerKind.PUBLISH, "chat", lambda ctx: [e for e in ctx.events if e.payload["keep"]])
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['{"keep":true,"n":1}', '{"keep":false,"n":2}'])
    await assert_sent(comm, data("s", '{"keep":true,"n":1}'))
    await assert_published(comm, "p", [0, 1])
    await assert_silent(comm)


async def test_on_publish_transforms_payloads(connect, chat, register) -> None:
    async def shout(ctx: HandlerContext) -> list[OutgoingEvent]:
        return [OutgoingEvent(e.id, {"text": e.payload["text"].upper()}) for e in ctx.events]

    register(HandlerKind.PUBLISH, "chat", shout)
    comm = await connect()
    await subscribed(comm, "s", "/chat/*")
    await publish(comm, "p", "/chat/room", [json.dumps({"text": "hé there"})])
    await assert_sent(comm, data("s", '{"text":"HÉ THERE"}'))
    await assert_published(comm, "p", [0])


async def test_an_event_marked_with_error_is_reported_in_failed_and_not_broadcast(
    connect, chat, register
) -> None:
    def mark(ctx: HandlerContext) -> list[dict[str, Any]]:
        first, second = ctx.events
        return [{"id": first.id, "payload": first.payload}, {"id": second.id, "error": "no swearing"}]

    register(HandlerKind.PUBLISH, "chat", mark)
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['"fine"', '"darn"'])
    await assert_sent(comm, data("s", '"fine"'))
    failure = {
        "code": "EventRejectedException",
        "identifier": UUID_PLACEHOLDER,
        "index": 1,
        "message": "no swearing",
    }
    await assert_published(comm, "p", [0], failed=[failure])
    await assert_silent(comm)


async def test_reject_refuses_the_whole_publish_with_the_handlers_message(connect, chat, register) -> None:
    def refuse(ctx: HandlerContext) -> None:
        raise handlers.Reject("chat is closed")

    register(HandlerKind.PUBLISH, "chat", refuse)
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['"hi"'])
    await assert_sent(
        comm,
        {
            "type": "publish_error",
            "id": "p",
            "errors": [{"errorType": "BadRequestException", "message": "chat is closed"}],
        },
    )
    await assert_silent(comm)


async def test_reject_over_http_is_a_403_in_the_protocol_shape(api_key, chat, register) -> None:
    def refuse(ctx: HandlerContext) -> None:
        raise handlers.Reject("chat is closed")

    register(HandlerKind.PUBLISH, "chat", refuse)
    response = await AsyncClient().post(
        "/event",
        {"channel": "/chat/room", "events": ['"hi"']},
        content_type="application/json",
        headers={"x-api-key": api_key},
    )
    assert response.status_code == 403
    assert response.json() == {"errors": [{"errorType": "BadRequestException", "message": "chat is closed"}]}


async def test_on_subscribe_denies_with_subscribe_error_and_allows_by_returning(
    connect, chat, register
) -> None:
    def owner_only(ctx: HandlerContext) -> None:
        if ctx.channel.segments[1] != "mine":
            raise handlers.Reject("not your channel")

    register(HandlerKind.SUBSCRIBE, "chat", owner_only)
    comm = await connect()
    await subscribe(comm, "theirs", "/chat/theirs")
    await assert_sent(
        comm,
        {
            "type": "subscribe_error",
            "id": "theirs",
            "errors": [{"errorType": "BadRequestException", "message": "not your channel"}],
        },
    )
    await subscribed(comm, "mine", "/chat/mine")
    await publish(comm, "p", "/chat/theirs", ['"secret"'])
    await assert_published(comm, "p", [0])
    await assert_silent(comm)


async def test_on_subscribe_raising_unauthorized_answers_unauthorized_exception(
    connect, chat, register
) -> None:
    def nobody(ctx: HandlerContext) -> None:
        raise handlers.Unauthorized()

    register(HandlerKind.SUBSCRIBE, "chat", nobody)
    comm = await connect()
    await subscribe(comm, "s", "/chat/room")
    await assert_sent(
        comm,
        {
            "type": "subscribe_error",
            "id": "s",
            "errors": [
                {"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}
            ],
        },
    )


@pytest.mark.parametrize("style", ["sync", "async"])
async def test_a_slow_handler_is_bounded_by_handler_timeout(connect, chat, register, style) -> None:
    if style == "sync":

        def slow(ctx: HandlerContext) -> None:
            time.sleep(1)

    else:

        async def slow(ctx: HandlerContext) -> None:
            await asyncio.sleep(1)

    register(HandlerKind.PUBLISH, "chat", slow)
    comm = await connect()
    with override_settings(REALTIME={"HANDLER_TIMEOUT": 0.1}):
        await publish(comm, "p", "/chat/room", ['"hi"'])
        await assert_sent(
            comm,
            {
                "type": "publish_error",
                "id": "p",
                "errors": [
                    {"errorType": "HandlerTimeout", "message": "The event handler did not finish in time."}
                ],
            },
        )


async def test_a_failing_handler_is_a_clean_error_and_a_log_line_with_context(
    connect, chat, register, caplog
) -> None:
    def broken(ctx: HandlerContext) -> None:
        raise KeyError("oops")

    register(HandlerKind.PUBLISH, "chat", broken)
    comm = await connect()
    with caplog.at_level(logging.ERROR, logger="realtime.handlers"):
        await publish(comm, "p", "/chat/room", ['"hi"'])
        await assert_sent(
            comm,
            {
                "type": "publish_error",
                "id": "p",
                "errors": [{"errorType": "HandlerError", "message": "The event handler failed."}],
            },
        )
    (record,) = [r for r in caplog.records if r.name == "realtime.handlers"]
    assert "PUBLISH handler" in record.getMessage() and "/chat/room" in record.getMessage()
    assert record.exc_info is not None
    # The connection is still usable.
    await subscribed(comm, "s", "/chat/room")


@pytest.mark.parametrize(
    "result",
    [
        "not a list",
        [{"payload": 1}],
        [{"id": "unknown", "payload": 1}],
        [42],
    ],
)
async def test_a_malformed_handler_result_is_a_handler_error(connect, chat, register, result) -> None:
    register(HandlerKind.PUBLISH, "chat", lambda ctx: result)
    comm = await connect()
    await publish(comm, "p", "/chat/room", ['"hi"'])
    frame = await comm.receive_json_from()
    assert frame == {
        "type": "publish_error",
        "id": "p",
        "errors": [{"errorType": "HandlerError", "message": frame["errors"][0]["message"]}],
    }


async def test_a_handler_returning_an_id_twice_is_a_handler_error(connect, chat, register) -> None:
    register(HandlerKind.PUBLISH, "chat", lambda ctx: [ctx.events[0], ctx.events[0]])
    comm = await connect()
    await publish(comm, "p", "/chat/room", ['"hi"'])
    frame = await comm.receive_json_from()
    assert frame["type"] == "publish_error"
    assert frame["errors"][0]["errorType"] == "HandlerError"
    assert "twice" in frame["errors"][0]["message"]


async def test_a_transformed_event_over_the_size_limit_fails_alone(connect, chat, register) -> None:
    def grow(ctx: HandlerContext) -> list[OutgoingEvent]:
        return [OutgoingEvent(e.id, "x" * 300_000 if e.payload == "big" else e.payload) for e in ctx.events]

    register(HandlerKind.PUBLISH, "chat", grow)
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['"big"', '"small"'])
    await assert_sent(comm, data("s", '"small"'))
    failure = {
        "code": "EventTooLargeException",
        "identifier": UUID_PLACEHOLDER,
        "index": 0,
        "message": "Transformed event is larger than 240KB",
    }
    await assert_published(comm, "p", [1], failed=[failure])


async def test_the_context_mirrors_appsyncs_ctx(connect, chat, register) -> None:
    seen: list[dict[str, Any]] = []

    def record(ctx: HandlerContext) -> None:
        seen.append(ctx.as_dict())

    register(HandlerKind.PUBLISH, "chat", record)
    comm = await connect()
    await publish(comm, "p", "chat/a/b", ['{"n":1}'])
    frame = await assert_published(comm, "p", [0])
    (ctx,) = seen
    headers = ctx["request"].pop("headers")
    assert "cookie" not in headers
    assert ctx == {
        "identity": None,
        "request": {"domainName": None},
        "info": {
            "channel": {"path": "/chat/a/b", "segments": ["chat", "a", "b"]},
            "channelNamespace": {"name": "chat"},
            "operation": "PUBLISH",
        },
        "events": [{"id": frame["successful"][0]["identifier"], "payload": {"n": 1}}],
        "stash": {},
    }


async def test_sync_handlers_may_use_the_orm(connect, chat, register) -> None:
    def count_namespaces(ctx: HandlerContext) -> list[OutgoingEvent]:
        return [OutgoingEvent(e.id, {"namespaces": Namespace.objects.count()}) for e in ctx.events]

    register(HandlerKind.PUBLISH, "chat", count_namespaces)
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['"hi"'])
    await assert_sent(comm, data("s", '{"namespaces":2}'))


async def test_the_namespace_row_selects_a_handler_by_registered_name(connect, chat, register) -> None:
    register(
        HandlerKind.PUBLISH, "shared-uppercase", lambda ctx: [OutgoingEvent(e.id, "UP") for e in ctx.events]
    )
    chat.publish_handler = "shared-uppercase"
    await sync_to_async(chat.save)()
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['"down"'])
    await assert_sent(comm, data("s", '"UP"'))


async def test_after_publish_sees_the_broadcast_events_without_delaying_them(connect, chat, register) -> None:
    seen: asyncio.Queue[Any] = asyncio.Queue()
    release = asyncio.Event()

    async def persist(ctx: HandlerContext) -> None:
        await release.wait()
        await seen.put([e.payload for e in ctx.events])

    register(HandlerKind.AFTER_PUBLISH, "chat", persist)
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    await publish(comm, "p", "/chat/room", ['{"n":1}', '{"n":2}'])
    # Delivered and acknowledged while the after_publish handler is still waiting.
    frames = [await comm.receive_json_from() for _ in range(3)]
    assert frames[:2] == [data("s", '{"n":1}'), data("s", '{"n":2}')]
    assert without_identifiers(frames[2])["type"] == "publish_success"
    release.set()
    assert await asyncio.wait_for(seen.get(), 1) == [{"n": 1}, {"n": 2}]


async def test_a_failing_after_publish_handler_is_only_logged(connect, chat, register, caplog) -> None:
    done = asyncio.Event()

    async def broken(ctx: HandlerContext) -> None:
        done.set()
        raise RuntimeError("disk full")

    register(HandlerKind.AFTER_PUBLISH, "chat", broken)
    comm = await connect()
    await subscribed(comm, "s", "/chat/room")
    with caplog.at_level(logging.ERROR, logger="realtime.handlers"):
        await publish(comm, "p", "/chat/room", ['"hi"'])
        await assert_sent(comm, data("s", '"hi"'))
        await assert_published(comm, "p", [0])
        await asyncio.wait_for(done.wait(), 1)
        await asyncio.sleep(0)
    assert any("failed" in r.getMessage() for r in caplog.records if r.name == "realtime.handlers")


def test_registering_two_handlers_under_one_name_is_refused(register) -> None:
    from django.core.exceptions import ImproperlyConfigured

    register(HandlerKind.PUBLISH, "dup", lambda ctx: None)
    with pytest.raises(ImproperlyConfigured):
        handlers.on_publish("dup")(lambda ctx: None)
