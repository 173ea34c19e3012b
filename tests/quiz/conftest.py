"""Quiz fixtures: a host, a game, players with tokens, and WebSocket players."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client, override_settings

from config.asgi import application
from quiz import autopilot, coalescer, services, worker
from quiz.batching import db_call
from quiz.models import Game
from realtime.lifecycle import lifecycle
from realtime.models import Namespace
from realtime.operations import relay
from realtime.state import reset_all

REALTIME_PATH = "/event/realtime"
QUESTIONS = {
    "title": "Test set",
    "questions": [
        {"text": "2 + 2?", "choices": ["3", "4", "5"], "correct": 1, "time_limit": 30, "points": 1000},
        {
            "text": "Capital of France?",
            "choices": ["Paris", "Rome"],
            "correct": 0,
            "time_limit": 30,
            "points": 500,
        },
    ],
}


@pytest.fixture(autouse=True)
async def _quiz_settings():
    cache.clear()
    reset_all()
    quiz = {"WORKER": "inprocess", "LEADERBOARD_INTERVAL": 0.05, "WORKER_POLL": 0.02, "CACHE_TTL": 0}
    with override_settings(QUIZ=quiz):
        yield
        await worker.astop()
        await autopilot.astop()
    cache.clear()
    reset_all()


@pytest.fixture(autouse=True)
async def _relay_in_process():
    """Publications go out from this process, as on the embedded default.

    The relay and the leaderboard coalescer stop with the test, before its rows are flushed.
    """
    from django.conf import settings

    with override_settings(REALTIME={**settings.REALTIME, "RELAY": "inprocess", "RELAY_POLL": 0.1}):
        yield
        await lifecycle.stop(relay.SERVICE, coalescer.SERVICE)
        await db_call(lambda: None)


@pytest.fixture
def external_worker():
    """No scoring in this process: what the API stores stays as it was stored."""
    from django.conf import settings

    with override_settings(QUIZ={**settings.QUIZ, "WORKER": "external"}):
        yield


@pytest.fixture
def quiz_namespace() -> Namespace:
    # Transactional tests flush the migration's rows; put the namespace back.
    namespace, _ = Namespace.objects.update_or_create(
        name="quiz",
        # As the migrations leave it (quiz 0002, 0005): its channels keep history (PROTOCOL §12).
        defaults={
            "publish_auth_modes": ["CUSTOM", "USER"],
            "subscribe_auth_modes": ["CUSTOM", "USER"],
            "history_size": 100,
            "history_ttl": 900,
        },
    )
    return namespace


@pytest.fixture
def host() -> User:
    return User.objects.create_user("host", password="host-pw-123", is_staff=True)


@pytest.fixture
def game(quiz_namespace: Namespace, host: User) -> Game:
    question_set = services.question_set_import(data=QUESTIONS)
    return services.game_open(game=services.game_create(host=host, question_set=question_set))


class WsPlayer:
    """A player's socket; frames of every subscription, read in order with a backlog."""

    def __init__(self, comm: WebsocketCommunicator) -> None:
        self.comm = comm
        self.backlog: list[dict[str, Any]] = []

    async def send(self, frame: dict[str, Any]) -> None:
        await self.comm.send_json_to(frame)

    async def expect(self, predicate: Any, timeout: float = 3.0) -> dict[str, Any]:
        """The first frame (backlog first) that matches ``predicate``."""
        for frame in self.backlog:
            if predicate(frame):
                self.backlog.remove(frame)
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = await self.comm.receive_json_from(timeout)
                if predicate(frame):
                    return frame
                self.backlog.append(frame)

    async def event_on(self, sub_id: str, kind: str | None = None, timeout: float = 3.0) -> dict[str, Any]:
        """The next event delivered to ``sub_id`` (of type ``kind``), parsed."""

        def matches(frame: dict[str, Any]) -> bool:
            if frame.get("type") != "data" or frame.get("id") != sub_id:
                return False
            return kind is None or json.loads(frame["event"]).get("type") == kind

        return json.loads((await self.expect(matches, timeout))["event"])

    async def assert_silent(self, seconds: float) -> None:
        """No frame but keep-alives arrives for ``seconds`` (and none is waiting in the backlog)."""
        assert [frame for frame in self.backlog if frame.get("type") != "ka"] == []
        async with asyncio.timeout(seconds + 1):
            while await self.comm.receive_nothing(seconds) is False:
                frame = await self.comm.receive_json_from()
                assert frame == {"type": "ka"}, f"expected silence, received {frame!r}"

    async def subscribe(self, sub_id: str, channel: str) -> dict[str, Any]:
        await self.send({"type": "subscribe", "id": sub_id, "channel": channel})
        return await self.expect(lambda f: f.get("id") == sub_id and f["type"].startswith("subscribe_"))


def token_subprotocol(token: str) -> str:
    raw = json.dumps({"authorization": token, "host": "testserver"}).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.fixture
async def ws_player() -> AsyncIterator[Any]:
    """``await ws_player(token)``: a player's socket; ``await ws_player(staff=user)``: a staff session's."""
    opened: list[WebsocketCommunicator] = []

    async def open_(token: str | None = None, *, staff: User | None = None) -> WsPlayer:
        headers = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
        subprotocols = ["aws-appsync-event-ws"]
        if staff is not None:
            client = Client()
            await sync_to_async(client.force_login)(staff)
            headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
        else:
            assert token is not None
            subprotocols.append(token_subprotocol(token))
        comm = WebsocketCommunicator(application, REALTIME_PATH, headers=headers, subprotocols=subprotocols)
        opened.append(comm)
        connected, _ = await comm.connect()
        assert connected
        return WsPlayer(comm)

    yield open_
    for comm in opened:
        await comm.disconnect()
