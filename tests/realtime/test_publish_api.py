"""``realtime.publish`` / ``realtime.apublish``: publishing from server code, no credentials."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

import realtime
from config.asgi import application
from realtime.exceptions import InvalidChannel, NamespaceNotFound, NoEvents, TooManyEvents
from realtime.models import Namespace
from realtime.operations.publishing import PublishResult, publish_from_server
from tests.realtime.conftest import (
    REALTIME_PATH,
    SUBPROTOCOL,
    UUID_PLACEHOLDER,
    api_key_authorization,
    assert_sent,
    assert_silent,
    data,
    header_subprotocol,
    subscribed,
    without_identifiers,
)

pytestmark = pytest.mark.django_db(transaction=True)


def masked(result: PublishResult) -> dict[str, Any]:
    return without_identifiers(result.as_dict())


def successful(*indexes: int) -> dict[str, Any]:
    return {
        "failed": [],
        "successful": [{"identifier": UUID_PLACEHOLDER, "index": index} for index in indexes],
    }


async def test_apublish_delivers_any_json_value_to_subscribers(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    result = await realtime.apublish("/default/room", [{"text": "hi", "n": [1, 2]}, 1, "x", None, True])

    assert masked(result) == successful(0, 1, 2, 3, 4)
    for event in ('{"text":"hi","n":[1,2]}', "1", '"x"', "null", "true"):
        await assert_sent(comm, data("s1", event))
    await assert_silent(comm)


async def test_apublish_keeps_non_ascii_text_as_is(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/*")

    await realtime.apublish("/default/room/a", [{"text": "café ☕"}])

    await assert_sent(comm, data("s1", '{"text":"café ☕"}'))


async def test_apublish_needs_no_credentials_even_where_clients_need_another_mode(connect):
    await sync_to_async(Namespace.objects.create)(name="locked", publish_auth_modes=["IAM"])
    comm = await connect()
    await subscribed(comm, "s1", "/locked/room")

    result = await realtime.apublish("/locked/room", ["sealed"])

    assert masked(result) == successful(0)
    await assert_sent(comm, data("s1", '"sealed"'))


async def test_an_apublish_event_over_the_size_limit_is_reported_in_failed(connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    result = await realtime.apublish("/default/room", ["x" * (240 * 1024), "small"])

    assert masked(result) == {
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
    await assert_sent(comm, data("s1", '"small"'))
    await assert_silent(comm)


@pytest.mark.parametrize(
    ("channel", "events", "error"),
    [
        ("/nowhere/room", [1], NamespaceNotFound),
        ("/default/*", [1], InvalidChannel),
        ("/default/a b", [1], InvalidChannel),
        ("/default/room", [], NoEvents),
        ("/default/room", [1] * 6, TooManyEvents),
    ],
)
async def test_apublish_raises_what_a_client_would_be_told(default_namespace, channel, events, error):
    with pytest.raises(error):
        await realtime.apublish(channel, events)


async def test_apublish_refuses_values_that_are_not_json_serialisable(default_namespace):
    with pytest.raises(TypeError):
        await realtime.apublish("/default/room", [object()])


async def test_publish_from_sync_code_on_the_server_loop_reaches_subscribers(connect):
    """A sync view or signal receiver under ASGI: sync code in a worker thread."""
    comm = await connect()
    await subscribed(comm, "s1", "/default/room")

    result = await sync_to_async(realtime.publish)("/default/room", [{"from": "sync"}])

    assert masked(result) == successful(0)
    await assert_sent(comm, data("s1", '{"from":"sync"}'))


def test_publish_from_a_sync_test_returns_the_publish_result(default_namespace):
    result = realtime.publish("/default/room", [{"a": 1}, 2])

    assert isinstance(result, realtime.PublishResult)
    assert masked(result) == successful(0, 1)


async def cancel_other_tasks() -> None:
    """What ``asyncio.run`` does before closing a loop: the hub's timers must not outlive it."""
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def test_publish_from_a_plain_thread_reaches_subscribers_on_the_server_loop(api_key):
    """Sync code outside any loop (a thread of the server process) publishing to its sockets."""
    loop = asyncio.new_event_loop()
    server = threading.Thread(target=loop.run_forever, daemon=True)
    server.start()

    def on_server(coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(timeout=5)

    async def open_subscriber() -> WebsocketCommunicator:
        authorization = header_subprotocol(api_key_authorization(api_key))
        comm = WebsocketCommunicator(application, REALTIME_PATH, subprotocols=[SUBPROTOCOL, authorization])
        assert (await comm.connect()) == (True, SUBPROTOCOL)
        await subscribed(comm, "s1", "/default/room")
        return comm

    comm = on_server(open_subscriber())
    try:
        result = realtime.publish("/default/room", [{"from": "thread"}])

        assert masked(result) == successful(0)
        on_server(assert_sent(comm, data("s1", '{"from":"thread"}')))
    finally:
        on_server(comm.disconnect())
        on_server(cancel_other_tasks())
        loop.call_soon_threadsafe(loop.stop)
        server.join(timeout=5)
        loop.close()


async def test_the_identifiers_given_to_publish_from_server_are_the_publish_identifiers(connect):
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    result = await publish_from_server("/default/room", [{"n": 1}, {"n": 2}], identifiers=["k#0", "k#1"])

    assert result.as_dict() == {
        "failed": [],
        "successful": [{"identifier": "k#0", "index": 0}, {"identifier": "k#1", "index": 1}],
    }
    await assert_sent(comm, data("s", '{"n":1}'))
    await assert_sent(comm, data("s", '{"n":2}'))
    await assert_silent(comm)
