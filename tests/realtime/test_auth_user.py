"""The USER auth mode: the Django session user, over WebSocket and HTTP (DESIGN §6)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group, User
from django.test import AsyncClient, Client, override_settings

from realtime.models import Namespace

from .conftest import (
    CONNECTION_ACK,
    CONNECTION_ERROR,
    KA,
    SUBPROTOCOL,
    UNAUTHORIZED,
    assert_closed,
    assert_published,
    assert_sent,
    assert_silent,
    connection_init,
    data,
    publish,
    subscribe,
    subscribed,
)

pytestmark = pytest.mark.django_db(transaction=True)

USER_ONLY = {
    "CONNECTION_AUTH_MODES": ["USER"],
    "DEFAULT_PUBLISH_AUTH_MODES": ["USER"],
    "DEFAULT_SUBSCRIBE_AUTH_MODES": ["USER"],
}


@pytest.fixture(autouse=True)
def _user_mode():
    with override_settings(REALTIME=USER_ONLY):
        yield


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
def alice(default_namespace: Namespace) -> User:
    return User.objects.create_user("alice", password="pw-alice-123")


@pytest.fixture
def alice_cookie(alice: User) -> str:
    return _session_cookie(alice)


def _headers(cookie: str | None, origin: str | None = "http://testserver") -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"testserver")]
    if cookie is not None:
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    return headers


async def _open(open_socket: Any, cookie: str | None, origin: str | None = "http://testserver") -> Any:
    comm, subprotocol = await open_socket(subprotocols=[SUBPROTOCOL], headers=_headers(cookie, origin))
    assert subprotocol == SUBPROTOCOL
    return comm


async def test_a_signed_in_user_connects_subscribes_and_publishes_with_the_session_cookie(
    open_socket, alice_cookie
) -> None:
    comm = await _open(open_socket, alice_cookie)
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ACK)
    await assert_sent(comm, KA)
    await subscribed(comm, "s", "/default/room")
    await publish(comm, "p", "/default/room", ['"hi"'])
    await assert_sent(comm, data("s", '"hi"'))
    await assert_published(comm, "p", [0])


@pytest.mark.parametrize("cookie", [None, "not-a-session"])
async def test_without_a_valid_session_the_connection_is_refused(
    open_socket, default_namespace, cookie
) -> None:
    comm = await _open(open_socket, cookie)
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_an_inactive_user_is_refused(open_socket, alice, alice_cookie) -> None:
    alice.is_active = False
    await sync_to_async(alice.save)()
    comm = await _open(open_socket, alice_cookie)
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)


async def test_a_cross_site_origin_cannot_use_the_session_cookie(open_socket, alice_cookie) -> None:
    comm = await _open(open_socket, alice_cookie, origin="https://evil.example")
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_an_origin_listed_in_user_allowed_origins_is_accepted(open_socket, alice_cookie) -> None:
    with override_settings(REALTIME={**USER_ONLY, "USER_ALLOWED_ORIGINS": ["https://app.example"]}):
        comm = await _open(open_socket, alice_cookie, origin="https://app.example")
        await connection_init(comm)
        await assert_sent(comm, CONNECTION_ACK)


async def test_namespace_groups_limit_who_may_subscribe_and_publish(open_socket, alice, alice_cookie) -> None:
    await sync_to_async(Namespace.objects.create)(
        name="staff", subscribe_groups=["editors"], publish_groups=["editors"]
    )
    bob = await sync_to_async(User.objects.create_user)("bob", password="pw-bob-123")
    editors = await sync_to_async(Group.objects.create)(name="editors")
    await sync_to_async(bob.groups.add)(editors)
    bob_socket = await _open(open_socket, await sync_to_async(_session_cookie)(bob))
    await subscribed(bob_socket, "s", "/staff/news")

    alice_socket = await _open(open_socket, alice_cookie)
    await subscribe(alice_socket, "s", "/staff/news")
    await assert_sent(alice_socket, {"type": "subscribe_error", "id": "s", "errors": [UNAUTHORIZED]})
    await publish(alice_socket, "p", "/staff/news", ['"forged"'])
    await assert_sent(alice_socket, {"type": "publish_error", "id": "p", "errors": [UNAUTHORIZED]})
    await assert_silent(bob_socket)

    await publish(bob_socket, "p", "/staff/news", ['"real"'])
    await assert_sent(bob_socket, data("s", '"real"'))
    await assert_published(bob_socket, "p", [0])


async def test_a_superuser_passes_every_group_check(open_socket) -> None:
    await sync_to_async(Namespace.objects.create)(name="staff", subscribe_groups=["editors"])
    root = await sync_to_async(User.objects.create_superuser)("root", password="pw-root-123")
    comm = await _open(open_socket, await sync_to_async(_session_cookie)(root))
    await subscribed(comm, "s", "/staff/news")


def _csrf_client(user: User) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/admin/login/")  # sets the csrftoken cookie
    return client, client.cookies["csrftoken"].value


def test_a_cookie_authenticated_http_publish_needs_the_csrf_token(alice) -> None:
    client, token = _csrf_client(alice)
    body = {"channel": "/default/room", "events": ['"hi"']}
    refused = client.post("/event", body, content_type="application/json")
    assert refused.status_code == 401
    assert refused.json() == {
        "errors": [{"errorType": "UnauthorizedException", "message": "CSRF check failed."}]
    }
    accepted = client.post("/event", body, content_type="application/json", headers={"x-csrftoken": token})
    assert accepted.status_code == 200
    assert [entry["index"] for entry in accepted.json()["successful"]] == [0]


async def test_an_anonymous_http_publish_is_unauthorized(default_namespace) -> None:
    response = await AsyncClient().post(
        "/event", {"channel": "/default/room", "events": ['"hi"']}, content_type="application/json"
    )
    assert response.status_code == 401
    assert response.json() == {"errors": [UNAUTHORIZED]}
