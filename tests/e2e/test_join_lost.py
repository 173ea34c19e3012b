"""A join whose answer is lost after its commit is retried with the same Idempotency-Key and gets
the same player and token.

Two places can lose the answer, each cut by a TCP proxy the test runs (:class:`ReplyCutter`):

- **the client's connection**: a proxy in front of daphne forwards the join, lets daphne answer,
  then drops the connection instead of passing the 201 on;
- **PostgreSQL's connection**: a proxy between daphne and PostgreSQL forwards the join's
  ``COMMIT``, lets PostgreSQL commit, then drops the connection before its reply reaches the
  server, which answers 503 (the commit's outcome is unknown to it).

Either way the player is stored, and the retry gets a 201 with the first attempt's player and a
token that is that player's; the database holds the one player.
"""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from .conftest import DaphneFactory, DaphneServer
from .test_faults import (
    FAULTS_SETTINGS,
    PG_HOST,
    PG_PORT,
    SETUP_GAME,
    PgDatabase,
    _pg_url,
    _request,
    pg_database,  # noqa: F401  (fixtures used by this module's tests)
    pg_template,  # noqa: F401
)

pytestmark = pytest.mark.e2e


class ReplyCutter:
    """``127.0.0.1:<port>`` → ``target``, on its own thread; loses one reply on purpose.

    On a connection that has sent ``armed_by``, the first chunk that holds ``cut_on`` is forwarded;
    what the target answers to it is not: both sides of the connection are dropped instead. Once.
    """

    def __init__(self, target: tuple[str, int], *, armed_by: bytes, cut_on: bytes) -> None:
        self.target = target
        self.armed_by = armed_by
        self.cut_on = cut_on
        self.port = 0
        self.cuts = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="reply-cutter", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> ReplyCutter:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in self._writers:
            writer.transport.abort()
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self._writers.add(client_writer)
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._writers.add(upstream_writer)
        state = {"armed": False, "dropping": False}

        async def outbound() -> None:
            while data := await client_reader.read(65536):
                state["armed"] = state["armed"] or self.armed_by in data
                if state["armed"] and self.cut_on in data and self.cuts == 0:
                    self.cuts += 1
                    state["dropping"] = True
                upstream_writer.write(data)
                await upstream_writer.drain()

        async def inbound() -> None:
            while data := await upstream_reader.read(65536):
                if state["dropping"]:
                    return  # the reply to the cut request: never passed on
                client_writer.write(data)
                await client_writer.drain()

        pipes = [asyncio.ensure_future(outbound()), asyncio.ensure_future(inbound())]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pipe in pipes:
                pipe.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for writer in (client_writer, upstream_writer):
                writer.transport.abort()
                self._writers.discard(writer)


@pytest.fixture
def cutters() -> Iterator[list[ReplyCutter]]:
    started: list[ReplyCutter] = []
    yield started
    for cutter in started:
        cutter.stop()


def _join(port: int, code: str, key: str) -> Any:
    return _request(
        _Endpoint(port),  # type: ignore[arg-type]
        "POST",
        f"/api/quiz/games/{code}/join",
        {"nickname": "ada"},
        {"idempotency-key": f'"{key}"'},
    )


class _Endpoint:
    """What :func:`_request` reads of a server: where it listens."""

    host = "127.0.0.1"

    def __init__(self, port: int) -> None:
        self.port = port


STORED = """
import json
from quiz.models import Player
print(json.dumps([[p.pk, p.nickname, p.token_hash] for p in Player.objects.order_by("pk")]))
"""


def _assert_one_player_with(database: PgDatabase, body: dict[str, Any]) -> None:
    token_hash = hashlib.sha256(body["token"].encode()).hexdigest()
    assert database.django(STORED) == [[body["player_id"], "ada", token_hash]]


def _server(daphne_factory: DaphneFactory, database: PgDatabase, port: int = PG_PORT) -> DaphneServer:
    (server,) = daphne_factory(
        "join-lost", DJANGO_SETTINGS_MODULE=FAULTS_SETTINGS, DATABASE_URL=_pg_url(database.name, port)
    )
    return server


def test_a_join_whose_201_the_proxy_drops_is_answered_again_by_its_retry(
    pg_database: PgDatabase,  # noqa: F811
    daphne_factory: DaphneFactory,
    cutters: list[ReplyCutter],
) -> None:
    setup = pg_database.django(SETUP_GAME)
    server = _server(daphne_factory, pg_database)
    front = ReplyCutter((server.host, server.port), armed_by=b"POST /api/quiz/", cut_on=b"POST /api/quiz/")
    cutters.append(front.start())
    key = str(uuid.uuid4())

    with pytest.raises((ConnectionError, http.client.HTTPException)):
        _join(front.port, setup["code"], key)
    retry = _join(front.port, setup["code"], key)

    assert front.cuts == 1
    assert retry.status == 201
    _assert_one_player_with(pg_database, retry.body)


def test_a_join_whose_commit_reply_postgresql_never_delivers_is_503_then_the_same_player(
    pg_database: PgDatabase,  # noqa: F811
    daphne_factory: DaphneFactory,
    cutters: list[ReplyCutter],
) -> None:
    setup = pg_database.django(SETUP_GAME)
    database = ReplyCutter((PG_HOST, PG_PORT), armed_by=b'INSERT INTO "quiz_player"', cut_on=b"COMMIT")
    cutters.append(database.start())
    server = _server(daphne_factory, pg_database, database.port)
    key = str(uuid.uuid4())

    lost = _join(server.port, setup["code"], key)
    stored_meanwhile = pg_database.scalar("SELECT count(*) FROM quiz_player")
    retry = _join(server.port, setup["code"], key)

    assert database.cuts == 1
    assert (lost.status, lost.headers["retry-after"], lost.body["error"]["code"]) == (503, "2", "unavailable")
    assert stored_meanwhile == 1  # the commit went through; only its reply was lost
    assert retry.status == 201
    _assert_one_player_with(pg_database, retry.body)
