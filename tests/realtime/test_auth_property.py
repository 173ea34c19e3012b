"""Property: whatever the namespaces' modes and the clients' credentials, no subscriber ever
receives an event it was not authorized for, and every authorized one receives it exactly once."""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client, override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import realtime
from config.asgi import application
from realtime.models import Namespace
from realtime.store.services import apikey_create, apikey_revoke

pytestmark = pytest.mark.django_db(transaction=True)

# Namespace name -> subscribe modes. Connections may use any of the three modes.
NAMESPACES = {
    "keys": ["API_KEY"],
    "people": ["USER"],
    "mixed": ["API_KEY", "USER"],
    "lambda": ["CUSTOM"],
}
CREDENTIALS = ["valid-key", "revoked-key", "garbage-key", "session", "custom-allow", "custom-deny", "nothing"]
MODE_OF = {"valid-key": "API_KEY", "session": "USER", "custom-allow": "CUSTOM"}
SETTINGS = {
    "CONNECTION_AUTH_MODES": ["API_KEY", "USER", "CUSTOM"],
    "CUSTOM_AUTHORIZER": {"HANDLER": "tests.realtime.custom_authorizers.authorize"},
}


@dataclass(frozen=True)
class World:
    valid_key: str
    revoked_key: str
    session: str


@dataclass(frozen=True)
class Subscriber:
    credential: str
    namespace: str
    channel: str  # "a", "b" or "*"

    @property
    def path(self) -> str:
        return f"/{self.namespace}/{self.channel}"

    def authorized(self) -> bool:
        mode = MODE_OF.get(self.credential)
        return mode is not None and mode in NAMESPACES[self.namespace]

    def matches(self, namespace: str, channel: str) -> bool:
        return self.namespace == namespace and self.channel in (channel, "*")


def _socket(world: World, credential: str) -> WebsocketCommunicator:
    auth: dict[str, str] = {"host": "testserver"}
    headers = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
    if credential in ("valid-key", "revoked-key", "garbage-key"):
        auth["x-api-key"] = {
            "valid-key": world.valid_key,
            "revoked-key": world.revoked_key,
            "garbage-key": "rt-not-a-key",
        }[credential]
    elif credential == "session":
        headers.append((b"cookie", f"sessionid={world.session}".encode()))
    elif credential == "custom-allow":
        auth["authorization"] = "allow:someone"
    elif credential == "custom-deny":
        auth["authorization"] = "deny"
    encoded = base64.urlsafe_b64encode(json.dumps(auth).encode()).decode().rstrip("=")
    return WebsocketCommunicator(
        application,
        "/event/realtime",
        headers=headers,
        subprotocols=["aws-appsync-event-ws", f"header-{encoded}"],
    )


async def _frames(comm: WebsocketCommunicator, timeout: float = 0.15) -> list[dict[str, Any]]:
    frames = []
    while not await comm.receive_nothing(timeout):
        output = await comm.receive_output()
        if output["type"] == "websocket.send":
            frames.append(json.loads(output["text"]))
    return frames


async def _run(world: World, subscribers: list[Subscriber], target: tuple[str, str]) -> None:
    sockets = []
    for index, subscriber in enumerate(subscribers):
        comm = _socket(world, subscriber.credential)
        connected, _ = await comm.connect()
        assert connected
        await comm.send_json_to({"type": "subscribe", "id": f"s{index}", "channel": subscriber.path})
        sockets.append(comm)
    # Let every subscribe be answered before the publish.
    before = [await _frames(comm) for comm in sockets]
    namespace, channel = target
    await realtime.apublish(f"/{namespace}/{channel}", [{"n": 1}])
    for index, (subscriber, comm) in enumerate(zip(subscribers, sockets, strict=True)):
        frames = before[index] + await _frames(comm)
        data = [frame for frame in frames if frame["type"] == "data"]
        expected = subscriber.authorized() and subscriber.matches(namespace, channel)
        assert data == ([{"type": "data", "id": f"s{index}", "event": '{"n":1}'}] if expected else []), (
            subscriber,
            frames,
        )
        if subscriber.authorized():
            assert {"type": "subscribe_success", "id": f"s{index}"} in frames
        await comm.disconnect()


@pytest.fixture
def world(default_namespace) -> World:
    for name, modes in NAMESPACES.items():
        Namespace.objects.create(name=name, subscribe_auth_modes=modes)
    _, valid_key = apikey_create()
    revoked, revoked_key = apikey_create()
    apikey_revoke(prefix=revoked.prefix)
    client = Client()
    client.force_login(User.objects.create_user("someone", password="pw-someone-1"))
    return World(valid_key, revoked_key, client.cookies["sessionid"].value)


subscribers = st.lists(
    st.builds(
        Subscriber,
        credential=st.sampled_from(CREDENTIALS),
        namespace=st.sampled_from(sorted(NAMESPACES)),
        channel=st.sampled_from(["a", "b", "*"]),
    ),
    min_size=1,
    max_size=4,
)
targets = st.tuples(st.sampled_from(sorted(NAMESPACES)), st.sampled_from(["a", "b"]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(subscribers=subscribers, target=targets)
def test_no_subscriber_receives_an_event_it_was_not_authorized_for(world, subscribers, target) -> None:
    with override_settings(REALTIME=SETTINGS):
        async_to_sync(asyncio.wait_for)(_run(world, subscribers, target), 20)
