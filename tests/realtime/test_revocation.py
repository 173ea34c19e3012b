"""Live revocation and server-side control: the right sockets close or lose a subscription, and only those."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.test import Client, override_settings

import realtime
from realtime.core.protocol import CloseCode
from realtime.models import ApiKey
from realtime.presence.connections import connections
from realtime.presence.occupancy import Occupancy
from realtime.store.services import apikey_revoke

from .conftest import (
    SUBPROTOCOL,
    assert_closed,
    assert_published,
    assert_sent,
    assert_silent,
    data,
    publish,
    subscribed,
)

pytestmark = pytest.mark.django_db(transaction=True)

REVOKED_MESSAGE = "API key revoked"


def error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "errors": [{"errorType": error_type, "message": message}]}


async def assert_ended(comm, error_type: str, message: str, code: int, within: float = 1) -> None:
    """An ``error`` frame naming why, then the close."""
    await assert_sent(comm, error(error_type, message), timeout=within)
    close = await assert_closed(comm, code)
    assert close["reason"] == message


async def connect_tracked(connect, key: str | None = None) -> tuple[Any, str]:
    """A socket and its connection id."""
    before = {c.id for c in connections.all()}
    comm = await connect(key)
    (connection_id,) = {c.id for c in connections.all()} - before
    return comm, connection_id


async def test_revoking_an_api_key_closes_the_sockets_opened_with_it_and_only_those(
    connect, make_api_key
) -> None:
    doomed_key = await sync_to_async(make_api_key)(description="doomed")
    doomed = [await connect(doomed_key), await connect(doomed_key)]
    survivor = await connect()
    for comm in (*doomed, survivor):
        await subscribed(comm, "s", "/default/room")

    prefix = (await ApiKey.objects.aget(description="doomed")).prefix
    assert await sync_to_async(apikey_revoke)(prefix=prefix) == 1

    for comm in doomed:
        await assert_ended(comm, "UnauthorizedException", REVOKED_MESSAGE, CloseCode.ACCESS_ENDED)
    await publish(survivor, "p", "/default/room", ['"after"'])
    await assert_sent(survivor, data("s", '"after"'))
    await assert_published(survivor, "p", [0])
    for comm in doomed:
        await assert_silent(comm)
    await assert_silent(survivor)


async def test_disconnect_by_connection_closes_that_one(connect) -> None:
    doomed, doomed_id = await connect_tracked(connect)
    other = await connect()
    await subscribed(doomed, "s", "/default/room")
    await subscribed(other, "s", "/default/room")

    assert await realtime.adisconnect(connection=doomed_id, reason="Kicked by the host") == 1

    await assert_ended(doomed, "UnauthorizedException", "Kicked by the host", CloseCode.ACCESS_ENDED)
    await publish(other, "p", "/default/room", ['"x"'])
    await assert_sent(other, data("s", '"x"'))
    await assert_published(other, "p", [0])
    await assert_silent(doomed)
    await assert_silent(other)


async def test_disconnect_needs_a_criterion(connect) -> None:
    with pytest.raises(ValueError):
        await realtime.adisconnect(reason="everyone?")


async def test_a_server_side_unsubscribe_ends_that_subscription_only(connect) -> None:
    # A channel of its own: with Redis, earlier tests' processes may still count /default/room.
    room = f"/default/room-{uuid.uuid4().hex[:8]}"
    comm, connection_id = await connect_tracked(connect)
    publisher = await connect()
    await subscribed(comm, "s", room)
    await subscribed(comm, "w", "/default/*")

    ended = await realtime.aunsubscribe(channel=room[1:], connection=connection_id, reason="Not anymore")

    assert ended == 1
    await assert_sent(
        comm,
        {
            "type": "subscribe_error",
            "id": "s",
            "errors": [{"errorType": "UnauthorizedException", "message": "Not anymore"}],
        },
    )
    await publish(publisher, "p", room, ['"x"'])
    await assert_sent(comm, data("w", '"x"'))
    await assert_silent(comm)
    assert await realtime.aoccupancy(room) == Occupancy(room, 0, 0)


async def test_an_api_key_that_expires_closes_its_sockets_when_it_does(connect, make_api_key) -> None:
    expiring = await sync_to_async(make_api_key)(description="short", expires_in_days=0.5 / 86400)
    comm = await connect(expiring)
    survivor = await connect()
    await subscribed(comm, "s", "/default/room")
    await subscribed(survivor, "s", "/default/room")

    await assert_ended(comm, "UnauthorizedException", "Token expired", CloseCode.ACCESS_ENDED, within=3)
    await assert_silent(survivor)


@override_settings(REALTIME={"MAX_CONNECTION_AGE": 0.3})
async def test_a_connection_is_closed_at_its_maximum_age(connect) -> None:
    comm = await connect()
    await subscribed(comm, "s", "/default/room")

    message = "The connection reached its maximum age; reconnect."
    await assert_ended(comm, "ConnectionMaxAgeReached", message, CloseCode.MAX_AGE, within=3)


BOTH_MODES = {
    "CONNECTION_AUTH_MODES": ["API_KEY", "USER"],
    "DEFAULT_PUBLISH_AUTH_MODES": ["API_KEY", "USER"],
    "DEFAULT_SUBSCRIBE_AUTH_MODES": ["API_KEY", "USER"],
}


@override_settings(REALTIME=BOTH_MODES)
async def test_deactivating_a_user_closes_their_sockets_only(open_socket, connect, default_namespace) -> None:
    alice = await User.objects.acreate(username="alice")
    bob = await User.objects.acreate(username="bob")

    async def as_user(user: User):
        client = Client()
        await sync_to_async(client.force_login)(user)
        cookie = client.cookies["sessionid"].value
        headers = [
            (b"host", b"testserver"),
            (b"cookie", f"sessionid={cookie}".encode()),
            (b"origin", b"http://testserver"),
        ]
        comm, _ = await open_socket(subprotocols=[SUBPROTOCOL], headers=headers)
        await subscribed(comm, "s", "/default/room")
        return comm

    alice_socket = await as_user(alice)
    bob_socket = await as_user(bob)
    key_socket = await connect()
    await subscribed(key_socket, "s", "/default/room")

    alice.is_active = False
    await alice.asave(update_fields=["is_active"])

    await assert_ended(alice_socket, "UnauthorizedException", "User deactivated", CloseCode.ACCESS_ENDED)
    await publish(key_socket, "p", "/default/room", ['"x"'])
    await assert_sent(bob_socket, data("s", '"x"'))
    await assert_silent(alice_socket)


async def test_deadlines_of_closed_connections_do_not_pile_up(connect, monkeypatch) -> None:
    from realtime.presence import control

    monkeypatch.setattr(control, "COMPACT_SLACK", 2)
    for _ in range(8):
        comm = await connect()
        await comm.disconnect()
    survivor = await connect()
    await subscribed(survivor, "s", "/default/room")

    # One open connection: at most 2 x 1 + 2 entries are kept, whatever closed before.
    assert len(control.deadlines) <= 4


async def test_the_admin_shows_a_keys_live_connections(connect, make_api_key, admin_client) -> None:
    key = await sync_to_async(make_api_key)(description="watched")
    row = await ApiKey.objects.aget(description="watched")
    sockets = [await connect(key), await connect(key)]
    await connect()  # another key's
    url = f"/admin/realtime/apikey/{row.pk}/change/"

    page = await sync_to_async(admin_client.get)(url)
    await sockets[0].disconnect()
    after = await sync_to_async(admin_client.get)(url)

    assert page.status_code == 200
    assert live_connections(page.content.decode()) == "2"
    assert live_connections(after.content.decode()) == "1"


def live_connections(html: str) -> str:
    import re

    match = re.search(r"Live connections:</label>\s*<div class=\"readonly\">([^<]*)</div>", html)
    assert match, "the page shows no live connections"
    return match.group(1).strip()


async def test_a_long_reason_is_whole_in_the_error_frame_and_cut_to_fit_the_close_frame(connect) -> None:
    comm, connection_id = await connect_tracked(connect)
    reason = "é" * 100  # 200 bytes

    await realtime.adisconnect(connection=connection_id, reason=reason)

    await assert_sent(comm, error("UnauthorizedException", reason))
    close = await assert_closed(comm, CloseCode.ACCESS_ENDED)
    assert close["reason"] == "é" * 61
