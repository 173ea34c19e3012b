"""Signing a Django user out closes their USER-mode sockets: the right ones, and only those.

What "signed out" means is what Django's next request with the socket's session cookie would
decide: the session was logged out or deleted, the user deactivated, or the session auth hash
no longer matches (the password changed). Every other socket stays open and keeps receiving.
"""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import HASH_SESSION_KEY, SESSION_KEY
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.db import transaction
from django.test import Client, override_settings

import realtime
from realtime.core.protocol import CloseCode

from .conftest import SUBPROTOCOL, assert_closed, assert_sent, assert_silent, data, publish, subscribed

pytestmark = pytest.mark.django_db(transaction=True)

BOTH_MODES = {
    "CONNECTION_AUTH_MODES": ["API_KEY", "USER"],
    "DEFAULT_PUBLISH_AUTH_MODES": ["API_KEY", "USER"],
    "DEFAULT_SUBSCRIBE_AUTH_MODES": ["API_KEY", "USER"],
}
ROOM = "/default/room"
SIGNED_OUT = "Signed out"


async def assert_signed_out(comm: Any, message: str = SIGNED_OUT) -> None:
    await assert_sent(
        comm, {"type": "error", "errors": [{"errorType": "UnauthorizedException", "message": message}]}
    )
    close = await assert_closed(comm, CloseCode.ACCESS_ENDED)
    assert close["reason"] == message


class Browser:
    """One signed-in browser: a Django test client (its session) and a socket opened with its cookie."""

    def __init__(self, client: Client, comm: Any) -> None:
        self.client = client
        self.comm = comm

    @property
    def session_key(self) -> str:
        return str(self.client.cookies["sessionid"].value)


@pytest.fixture
def sign_in(open_socket: Any, default_namespace: Any) -> Any:
    async def sign_in_(user: User) -> Browser:
        client = Client()
        await sync_to_async(client.force_login)(user)
        return await socket_of(open_socket, client)

    return sign_in_


@pytest.fixture
def sign_in_with_cookie(open_socket: Any) -> Any:
    """A new socket for a browser already signed in, with its current cookie."""

    async def reopen(browser: Browser) -> Browser:
        return await socket_of(open_socket, browser.client)

    return reopen


async def socket_of(open_socket: Any, client: Client) -> Browser:
    headers = [
        (b"host", b"testserver"),
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://testserver"),
    ]
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL], headers=headers)
    await subscribed(comm, "s", ROOM)
    return Browser(client, comm)


@pytest.fixture
async def people() -> tuple[User, User]:
    alice = await sync_to_async(User.objects.create_user)("alice", password="first-pass-123")
    bob = await sync_to_async(User.objects.create_user)("bob", password="bobs-pass-123")
    return alice, bob


async def assert_still_receive(publisher: Any, *browsers: Browser) -> None:
    """A later publish reaches every socket still open, and nothing else arrives."""
    await publish(publisher, "p", ROOM, ['"later"'])
    for browser in browsers:
        await assert_sent(browser.comm, data("s", '"later"'))
        await assert_silent(browser.comm)


@override_settings(REALTIME=BOTH_MODES)
async def test_logout_closes_the_sockets_of_that_session_only(sign_in, people, connect) -> None:
    alice, bob = people
    laptop, phone, bobs = await sign_in(alice), await sign_in(alice), await sign_in(bob)
    key_socket = await connect()

    await sync_to_async(laptop.client.logout)()

    await assert_signed_out(laptop.comm)
    await assert_still_receive(key_socket, phone, bobs)


@override_settings(REALTIME=BOTH_MODES)
async def test_deleting_a_users_sessions_signs_them_out_everywhere(sign_in, people, connect) -> None:
    alice, bob = people
    laptop, phone, bobs = await sign_in(alice), await sign_in(alice), await sign_in(bob)
    key_socket = await connect()

    @sync_to_async
    def delete_sessions_of(user: User) -> int:
        mine = [s.pk for s in Session.objects.all() if s.get_decoded().get(SESSION_KEY) == str(user.pk)]
        return Session.objects.filter(pk__in=mine).delete()[0]

    assert await delete_sessions_of(alice) == 2

    await assert_signed_out(laptop.comm)
    await assert_signed_out(phone.comm)
    await assert_still_receive(key_socket, bobs)


@override_settings(REALTIME=BOTH_MODES)
async def test_a_password_change_closes_the_sessions_it_invalidated_and_no_other(
    sign_in, people, connect
) -> None:
    alice, bob = people
    laptop, phone, bobs = await sign_in(alice), await sign_in(alice), await sign_in(bob)
    key_socket = await connect()

    @sync_to_async
    def change_password_keeping(browser: Browser) -> None:
        # What update_session_auth_hash() leaves the changing session with (the new hash),
        # in the same transaction as the new password, without cycling the session key.
        with transaction.atomic():
            alice.set_password("second-pass-456")
            alice.save()
            session = SessionStore(browser.session_key)
            session[HASH_SESSION_KEY] = alice.get_session_auth_hash()
            session.save()

    await change_password_keeping(laptop)

    await assert_signed_out(phone.comm)
    await assert_still_receive(key_socket, laptop, bobs)


@override_settings(REALTIME=BOTH_MODES)
async def test_a_save_that_changes_no_credential_closes_nothing(sign_in, people, connect) -> None:
    alice, _ = people
    laptop = await sign_in(alice)
    key_socket = await connect()

    alice.first_name = "Alice"
    await alice.asave()
    alice.last_login = None
    await alice.asave(update_fields=["last_login"])

    await assert_still_receive(key_socket, laptop)


@override_settings(REALTIME=BOTH_MODES)
async def test_deactivation_closes_the_users_sockets_only(sign_in, people, connect) -> None:
    alice, bob = people
    laptop, bobs = await sign_in(alice), await sign_in(bob)
    key_socket = await connect()

    alice.is_active = False
    await alice.asave(update_fields=["is_active"])

    await assert_signed_out(laptop.comm, "User deactivated")
    await assert_still_receive(key_socket, bobs)


@override_settings(REALTIME=BOTH_MODES)
async def test_a_mode_narrows_a_user_criterion(sign_in, people, connect) -> None:
    # A Django user's pk and an OIDC ``sub`` may be equal: the receivers name the USER mode.
    _, bob = people
    bobs = await sign_in(bob)
    key_socket = await connect()

    assert await realtime.adisconnect(user=bob.pk, mode="OIDC") == 0
    await assert_still_receive(key_socket, bobs)
    assert await realtime.adisconnect(user=bob.pk, mode="USER", reason="Bye") == 1
    await assert_signed_out(bobs.comm, "Bye")


@override_settings(REALTIME=BOTH_MODES)
async def test_djangos_own_password_change_closes_every_socket_of_the_old_sessions(
    sign_in, sign_in_with_cookie, people, connect
) -> None:
    # The admin's password change calls update_session_auth_hash(), which keeps the browser
    # signed in under a *new* session key (cycle_key): the key the socket was opened with is
    # gone, so that socket closes too, and the page reconnects with its new cookie.
    alice, bob = people
    alice.is_staff = True
    await alice.asave()
    laptop, phone, bobs = await sign_in(alice), await sign_in(alice), await sign_in(bob)
    key_socket = await connect()
    old_key = laptop.session_key

    response = await sync_to_async(laptop.client.post)(
        "/admin/password_change/",
        {
            "old_password": "first-pass-123",
            "new_password1": "Second-pass-456",
            "new_password2": "Second-pass-456",
        },
    )

    assert response.status_code == 302, response.content.decode()[:500]
    assert laptop.session_key != old_key
    await assert_signed_out(laptop.comm)
    await assert_signed_out(phone.comm)
    await assert_still_receive(key_socket, bobs)
    again = await sign_in_with_cookie(laptop)
    await assert_still_receive(key_socket, bobs, again)
