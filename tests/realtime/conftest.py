"""Fixtures and protocol-named helpers for the ``realtime`` tests (STYLE habit 15).

Helpers compare whole frames: ``assert_sent(comm, {...})`` fails on any extra or
missing key, and ``assert_silent(comm)`` proves that nothing arrives within a
timeout without cancelling the application (``receive_output`` would).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from channels.layers import BaseChannelLayer
from channels.testing import WebsocketCommunicator

from config.asgi import application
from realtime.delivery import bridge as bridge_module
from realtime.models import Namespace
from realtime.store.services import apikey_create

SUBPROTOCOL = "aws-appsync-event-ws"
REALTIME_PATH = "/event/realtime"
HOST = "localhost"
UNAUTHORIZED_MESSAGE = "You are not authorized to make this call."
# An unknown namespace is an authorization failure without a message (PROTOCOL §2.3, §3.8).
NAMESPACE_NOT_FOUND = {"errorType": "UnauthorizedException"}
UNAUTHORIZED = {"errorType": "UnauthorizedException", "message": UNAUTHORIZED_MESSAGE}
INVALID_CHANNEL = {"errorType": "BadRequestException", "message": "Invalid Channel Format"}
CONNECTION_ERROR = {
    "type": "connection_error",
    "errors": [{"errorType": "UnauthorizedException", "errorCode": 401, "message": UNAUTHORIZED_MESSAGE}],
}
CONNECTION_ACK = {
    "type": "connection_ack",
    "connectionTimeoutMs": 300_000,
    "payload": {"connectionTimeoutMs": 300_000},
}
KA = {"type": "ka"}
UUID_PLACEHOLDER = "<uuid>"


# -- credentials --------------------------------------------------------------


def header_subprotocol(authorization: dict[str, str]) -> str:
    """The ``header-<base64url>`` subprotocol Amplify sends (PROTOCOL §3.1a): no padding."""
    raw = json.dumps(authorization, separators=(",", ":")).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def api_key_authorization(key: str) -> dict[str, str]:
    return {"x-api-key": key, "host": HOST}


@pytest.fixture
def default_namespace() -> Namespace:
    # The data migration creates it, but transactional tests flush it away.
    namespace, _ = Namespace.objects.get_or_create(name="default")
    return namespace


@pytest.fixture
def make_api_key() -> Callable[..., str]:
    """Create an API key row; returns the key itself (which is never stored)."""

    def make(**kwargs: Any) -> str:
        _, raw_key = apikey_create(**kwargs)
        return raw_key

    return make


@pytest.fixture
def api_key(default_namespace: Namespace, make_api_key: Callable[..., str]) -> str:
    return make_api_key(description="test")


# -- WebSocket communicators -----------------------------------------------------


Connect = Callable[..., Awaitable[WebsocketCommunicator]]


@pytest.fixture
async def open_socket() -> AsyncIterator[Callable[..., Awaitable[tuple[WebsocketCommunicator, Any]]]]:
    """Open a socket with any subprotocols/headers; returns (communicator, chosen subprotocol).

    Every communicator opened here is disconnected at teardown.
    """
    opened: list[WebsocketCommunicator] = []

    async def open_(
        *,
        subprotocols: list[str] | None = None,
        headers: list[tuple[bytes, bytes]] | None = None,
        path: str = REALTIME_PATH,
    ) -> tuple[WebsocketCommunicator, Any]:
        comm = WebsocketCommunicator(application, path, headers=headers, subprotocols=subprotocols)
        opened.append(comm)
        accepted, subprotocol = await comm.connect()
        assert accepted, f"the upgrade was refused with close code {subprotocol}"
        return comm, subprotocol

    yield open_

    for comm in opened:
        if comm._future is not None and not comm.future.done():
            await comm.disconnect()


@pytest.fixture
async def connect(open_socket: Any, api_key: str) -> Connect:
    """Open a socket authorized like Amplify: ``aws-appsync-event-ws`` + ``header-<b64url>``."""

    async def connect_(key: str | None = None) -> WebsocketCommunicator:
        authorization = api_key_authorization(key if key is not None else api_key)
        comm, subprotocol = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol(authorization)])
        assert subprotocol == SUBPROTOCOL
        return comm

    return connect_


# -- a channel layer that records, and can be down ------------------------------


class RecordingLayer(BaseChannelLayer):
    """Keeps every group_send; fails them while ``down`` is set; receive() waits forever."""

    extensions = ["groups"]

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.down = False

    async def new_channel(self, prefix: str = "specific.") -> str:
        return prefix + "hub!1"

    async def group_add(self, group: str, channel: str) -> None:
        pass

    async def group_discard(self, group: str, channel: str) -> None:
        pass

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        await asyncio.sleep(0)  # a round trip
        if self.down:
            raise ConnectionError("Redis is down")
        self.sent.append((group, message))

    async def receive(self, channel: str) -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


@pytest.fixture
def layer(monkeypatch: pytest.MonkeyPatch) -> RecordingLayer:
    """The bridge's channel layer is a :class:`RecordingLayer` for this test."""
    layer = RecordingLayer()
    monkeypatch.setattr(bridge_module, "get_channel_layer", lambda: layer)
    return layer


# -- frames in and out ----------------------------------------------------------------


async def assert_sent(comm: WebsocketCommunicator, expected: dict[str, Any], timeout: float = 1) -> None:
    """The next frame is exactly ``expected`` (the whole JSON object)."""
    assert await comm.receive_json_from(timeout) == expected


async def receive_frames(comm: WebsocketCommunicator, count: int, timeout: float = 1) -> list[dict[str, Any]]:
    return [await comm.receive_json_from(timeout) for _ in range(count)]


async def assert_silent(comm: WebsocketCommunicator, timeout: float = 0.1) -> None:
    """Nothing at all arrives within ``timeout`` (the application keeps running)."""
    if not await comm.receive_nothing(timeout):
        unexpected = await comm.receive_output()
        pytest.fail(f"expected silence, received {unexpected!r}")


async def assert_closed(comm: WebsocketCommunicator, code: int, timeout: float = 1) -> dict[str, Any]:
    """The next thing the server does is close the socket with ``code``."""
    message = await comm.receive_output(timeout)
    assert message["type"] == "websocket.close", f"expected a close, received {message!r}"
    assert message["code"] == code
    return message


def without_identifiers(frame: dict[str, Any]) -> dict[str, Any]:
    """A publish result with every ``identifier`` checked to be a UUID, then masked.

    The rest of the frame is left for a whole-object comparison.
    """
    masked = dict(frame)
    for key in ("successful", "failed"):
        if key in masked:
            entries = []
            for entry in masked[key]:
                identifier = entry["identifier"]
                assert str(uuid.UUID(identifier)) == identifier, f"{identifier!r} is not a UUID"
                entries.append({**entry, "identifier": UUID_PLACEHOLDER})
            masked[key] = entries
    return masked


def identifiers(frame: dict[str, Any]) -> list[str]:
    return [entry["identifier"] for key in ("successful", "failed") for entry in frame[key]]


async def connection_init(comm: WebsocketCommunicator) -> None:
    await comm.send_json_to({"type": "connection_init"})


async def subscribe(
    comm: WebsocketCommunicator, sub_id: str, channel: str, authorization: dict[str, str] | None = None
) -> None:
    frame: dict[str, Any] = {"type": "subscribe", "id": sub_id, "channel": channel}
    if authorization is not None:
        frame["authorization"] = authorization
    await comm.send_json_to(frame)


async def subscribed(comm: WebsocketCommunicator, sub_id: str, channel: str) -> None:
    """Subscribe and assert the ``subscribe_success``."""
    await subscribe(comm, sub_id, channel)
    await assert_sent(comm, {"type": "subscribe_success", "id": sub_id})


async def unsubscribe(comm: WebsocketCommunicator, sub_id: str) -> None:
    await comm.send_json_to({"type": "unsubscribe", "id": sub_id})


async def publish(
    comm: WebsocketCommunicator,
    pub_id: str,
    channel: str,
    events: list[Any],
    authorization: dict[str, str] | None = None,
) -> None:
    frame: dict[str, Any] = {"type": "publish", "id": pub_id, "channel": channel, "events": events}
    if authorization is not None:
        frame["authorization"] = authorization
    await comm.send_json_to(frame)


async def assert_published(
    comm: WebsocketCommunicator, pub_id: str, indexes: list[int], failed: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The next frame is a ``publish_success`` with these successful indexes and failures.

    ``failed`` entries are written with ``"identifier": UUID_PLACEHOLDER``.
    """
    frame = await comm.receive_json_from()
    assert without_identifiers(frame) == {
        "type": "publish_success",
        "id": pub_id,
        "successful": [{"identifier": UUID_PLACEHOLDER, "index": index} for index in indexes],
        "failed": failed or [],
    }
    return frame


def data(sub_id: str, event: str) -> dict[str, Any]:
    return {"type": "data", "id": sub_id, "event": event}


def by_id(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Frames of several subscriptions in a stable order (delivery order across them is free)."""
    return sorted(frames, key=lambda frame: json.dumps(frame, sort_keys=True))
