"""Leaderboards and host progress go out when they change, coalesced per game (quiz/coalescer.py).

A crowd's changes cost one broadcast per ``LEADERBOARD_INTERVAL`` and the last
one shows the last change; a game nobody touches costs no leaderboard query
and no publish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db.backends.utils import CursorWrapper
from django.test import AsyncClient, override_settings

from quiz import coalescer, services
from quiz.models import Feed, Game
from quiz.services.feeds import feed_broadcast, feeds_mark_stale
from quiz.worker import ScoringWorker
from realtime import signals as realtime_signals
from realtime.models import PendingPublication

from .conftest import WsPlayer

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def recorded_sql() -> Iterator[list[str]]:
    """Every SQL statement any thread runs meanwhile."""
    statements: list[str] = []
    execute = CursorWrapper._execute_with_wrappers

    def record(self: CursorWrapper, sql: str, params: Any, many: bool, executor: Any) -> Any:
        statements.append(sql)
        return execute(self, sql, params, many, executor)

    with mock.patch.object(CursorWrapper, "_execute_with_wrappers", record):
        yield statements


@contextmanager
def counted_publishes() -> Iterator[list[str]]:
    """The channel of every publish that went out meanwhile (``realtime.signals.event_published``)."""
    channels: list[str] = []

    async def count(*, channel: str, **kwargs: Any) -> None:
        channels.append(channel)

    realtime_signals.event_published.connect(count, dispatch_uid="test-coalescer-publishes")
    try:
        yield channels
    finally:
        realtime_signals.event_published.disconnect(dispatch_uid="test-coalescer-publishes")


async def boards_until(socket: WsPlayer, done: Any, timeout: float = 5) -> list[dict[str, Any]]:
    """Leaderboards on subscription ``l`` until one satisfies ``done``."""
    boards = [await socket.event_on("l", "leaderboard", timeout)]
    while not done(boards[-1]):
        boards.append(await socket.event_on("l", "leaderboard", timeout))
    return boards


def numbers(boards: list[dict[str, Any]], game: Game) -> list[int]:
    prefix = f"quiz.{game.pk}.leaderboard."
    assert all(board["identifier"].startswith(prefix) for board in boards)
    return [int(board["identifier"].removeprefix(prefix)) for board in boards]


async def test_a_crowd_joining_gets_one_leaderboard_per_interval_and_the_last_shows_everyone(
    game: Game, host, ws_player
) -> None:
    interval = 0.2
    crowd = 40
    with override_settings(QUIZ={**settings.QUIZ, "LEADERBOARD_INTERVAL": interval}):
        screen = await ws_player(staff=host)
        await screen.subscribe("l", f"/quiz/{game.code}/leaderboard")
        started = time.monotonic()
        for n in range(crowd):
            await services.aplayer_join(code=game.code, nickname=f"p{n}")
            await asyncio.sleep(0.02)
        boards = await boards_until(screen, lambda board: board["players"] == crowd)
        elapsed = time.monotonic() - started
        await screen.assert_silent(3 * interval)

    sent = (await Feed.objects.aget(game=game, kind=Feed.Kind.LEADERBOARD)).sent
    # In order, each once, and the last one sent is the last one heard.
    assert numbers(boards, game) == sorted(set(numbers(boards, game)))
    assert numbers(boards, game)[-1] == sent
    # 40 commits, a board at most every interval (and one for the lobby before them).
    assert sent <= elapsed / interval + 2, (sent, elapsed)
    assert len(boards[-1]["top"]) == 10


@pytest.mark.parametrize(
    ("idle_seconds", "quiz"),
    [
        (1.0, {}),
        # The measure, with the site's own intervals: run with -m e2e.
        pytest.param(10.0, {"LEADERBOARD_INTERVAL": 0.5, "WORKER_POLL": 0.25}, marks=pytest.mark.e2e),
    ],
    ids=["1s", "10s"],
)
async def test_an_idle_game_costs_no_leaderboard_query_and_no_publish(
    game: Game, ws_player, idle_seconds: float, quiz: dict[str, Any]
) -> None:
    with override_settings(QUIZ={**settings.QUIZ, **quiz}):
        client = AsyncClient()
        joined = []
        for nickname in ("ada", "bob"):
            response = await client.post(
                f"/api/quiz/games/{game.code}/join", {"nickname": nickname}, content_type="application/json"
            )
            joined.append(response.json())
        socket = await ws_player(joined[0]["token"])
        await socket.subscribe("l", joined[0]["channels"]["leaderboard"])
        game = await sync_to_async(services.game_start)(game=game)
        for info in joined:
            response = await client.post(
                f"/api/quiz/games/{game.code}/answers",
                {"question_id": game.current_question_id, "choice": 1},
                content_type="application/json",
                headers={"authorization": f"Bearer {info['token']}"},
            )
            assert response.status_code == 202
        # Both scored and shown: the game is live, and from now on nobody does anything.
        await boards_until(socket, lambda board: sum(row["score"] for row in board["top"]) > 0)
        await settled(game)
        while not await socket.comm.receive_nothing(0.2):
            await socket.comm.receive_json_from()  # sent before the idle time starts

        with recorded_sql() as statements, counted_publishes() as publishes:
            await asyncio.sleep(idle_seconds)
            await socket.assert_silent(0.01)

    leaderboard_queries = [sql for sql in statements if "quiz_player" in sql or "quiz_feed" in sql]
    assert leaderboard_queries == [], leaderboard_queries
    assert publishes == []
    assert not any("realtime_pendingpublication" in sql and "INSERT" in sql for sql in statements)
    # What does run while idle: the worker's and the relay's look at their queues.
    print(
        f"\n{idle_seconds:g} idle seconds: {len(statements)} queries, none on players or feeds; 0 publishes"
    )


async def settled(game: Game) -> None:
    """Until every feed is broadcast, every answer scored and every publication published."""

    def busy() -> bool:
        return (
            Feed.objects.filter(game=game, stale=True).exists()
            or game.answers.filter(scored_at=None).exists()
            or PendingPublication.objects.exists()
        )

    async with asyncio.timeout(5):
        while await sync_to_async(busy)():  # noqa: ASYNC110 - other threads' writes
            await asyncio.sleep(0.05)


# -- the service underneath -------------------------------------------------------------------


async def test_a_broadcast_too_soon_after_the_last_writes_nothing_and_says_when_to_come_back(
    game: Game,
) -> None:
    with override_settings(QUIZ={**settings.QUIZ, "LEADERBOARD_INTERVAL": 0.3}):
        assert await sync_to_async(feed_broadcast)(game_id=game.pk) is None
        await sync_to_async(feeds_mark_stale)(game_ids=[game.pk])

        wait = await sync_to_async(feed_broadcast)(game_id=game.pk)
        assert wait is not None and 0 < wait <= 0.3
        assert await sync_to_async(
            lambda: sorted(PendingPublication.objects.values_list("key", flat=True))
        )() == [
            f"quiz.{game.pk}.leaderboard.1",
            f"quiz.{game.pk}.progress.1",
            f"quiz.{game.pk}.state.lobby",
        ]

        await asyncio.sleep(wait)
        assert await sync_to_async(feed_broadcast)(game_id=game.pk) is None
        assert (
            await PendingPublication.objects.filter(key__startswith=f"quiz.{game.pk}.leaderboard.").acount()
            == 2
        )


async def test_wrong_answers_move_the_host_progress_but_not_the_leaderboard(game: Game) -> None:
    def answered_wrongly() -> None:
        started = services.game_start(game=game)
        player, _ = services.player_join(code=game.code, nickname="ada")
        Feed.objects.filter(game=game).update(stale=False)
        services.answer_submit(player=player, question_id=started.current_question_id, choice=0)

    await sync_to_async(answered_wrongly)()
    await ScoringWorker().score_once()

    stale = await sync_to_async(lambda: dict(Feed.objects.filter(game=game).values_list("kind", "stale")))()
    assert stale == {"leaderboard": False, "progress": True}


async def test_the_coalescer_beside_the_worker_starts_with_what_a_stopped_process_left_stale(
    game: Game, host, ws_player
) -> None:
    # The game was opened without any coalescer running: its feeds are stale.
    screen = await ws_player(staff=host)
    await screen.subscribe("l", f"/quiz/{game.code}/leaderboard")
    await sync_to_async(lambda: Feed.objects.filter(game=game).update(stale=True))()
    sweeper = coalescer.FeedCoalescer()
    task = asyncio.ensure_future(sweeper.run(sweep=True))
    try:
        board = await screen.event_on("l", "leaderboard")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert (board["state"], board["players"], board["top"]) == ("lobby", 0, [])
