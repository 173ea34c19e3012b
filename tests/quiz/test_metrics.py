"""Quiz metrics (``quiz.metrics``): joins, answers, scoring and its lag, leaderboards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient, override_settings
from django.utils import timezone
from prometheus_client import CollectorRegistry

from quiz import services
from quiz.metrics import metrics
from quiz.models import Answer, Game
from quiz.services.feeds import feed_broadcast
from quiz.worker import ScoringWorker

pytestmark = pytest.mark.django_db(transaction=True)

QUIZ = {"WORKER": "external", "CACHE_TTL": 0}


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    fresh = CollectorRegistry()
    metrics.bind(fresh)
    yield fresh
    metrics.bind()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


async def test_joins_are_counted_as_admitted_or_throttled(registry, game: Game) -> None:
    with override_settings(QUIZ={**QUIZ, "JOIN_RATE": "3/m", "JOIN_RATE_PER_CLIENT": "100/m"}):
        statuses = [
            (
                await AsyncClient().post(
                    f"/api/quiz/games/{game.code}/join",
                    {"nickname": f"p{i}"},
                    content_type="application/json",
                )
            ).status_code
            for i in range(5)
        ]

    assert statuses == [201, 201, 201, 429, 429]
    assert value(registry, "quiz_join_admitted_total") == 3
    assert value(registry, "quiz_join_throttled_total") == 2


def _answered(game: Game, players: int) -> Game:
    game = services.game_start(game=game)
    for index in range(players):
        player, _ = services.player_join(code=game.code, nickname=f"p{index}")
        services.answer_submit(player=player, question_id=game.current_question_id, choice=index % 3)
    return game


async def test_answers_are_counted_when_received_and_when_scored_with_their_lag(registry, game: Game) -> None:
    game = await sync_to_async(_answered)(game, 3)
    assert value(registry, "quiz_answer_received_total") == 3
    assert value(registry, "quiz_answer_scored_total") == 0
    # They arrived five seconds ago: the worker was busy.
    await Answer.objects.filter(game=game).aupdate(received_at=timezone.now() - timedelta(seconds=5))

    scored = await ScoringWorker().score_once()

    assert len(scored) == 3
    assert value(registry, "quiz_answer_scored_total") == 3
    assert value(registry, "quiz_scoring_lag_seconds_count") == 3
    assert value(registry, "quiz_scoring_lag_seconds_bucket", le="2.5") == 0
    assert value(registry, "quiz_scoring_lag_seconds_bucket", le="10.0") == 3
    assert 15 <= value(registry, "quiz_scoring_lag_seconds_sum") < 20


async def test_an_answer_over_http_is_counted_as_received(registry, game: Game) -> None:
    game = await sync_to_async(services.game_start)(game=game)
    joined = await AsyncClient().post(
        f"/api/quiz/games/{game.code}/join", {"nickname": "ada"}, content_type="application/json"
    )
    answered = await AsyncClient().post(
        f"/api/quiz/games/{game.code}/answers",
        {"question_id": game.current_question_id, "choice": 1},
        content_type="application/json",
        headers={"Authorization": f"Bearer {joined.json()['token']}"},
    )

    assert answered.status_code == 202
    assert value(registry, "quiz_answer_received_total") == 1


async def test_leaderboard_broadcasts_are_counted(registry, game: Game) -> None:
    await sync_to_async(_answered)(game, 2)
    await ScoringWorker().score_once()

    # The joins, the start and the scores: one leaderboard; then nothing changed.
    assert await sync_to_async(feed_broadcast)(game_id=game.pk) is None
    assert await sync_to_async(feed_broadcast)(game_id=game.pk) is None

    assert value(registry, "quiz_leaderboard_broadcasts_total") == 1
