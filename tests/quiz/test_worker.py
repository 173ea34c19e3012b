"""Scoring cannot lose an answer or score one twice: crashes roll back, restarts resume."""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.db.models import Sum

from quiz import services
from quiz.models import Answer, Game, Player
from quiz.worker import ScoringWorker

pytestmark = pytest.mark.django_db(transaction=True)


def _answered_game(game: Game, players: int) -> Game:
    game = services.game_start(game=game)
    question = game.current_question
    for index in range(players):
        player, _ = services.player_join(code=game.code, nickname=f"p{index}")
        services.answer_submit(player=player, question_id=question.pk, choice=index % 3)
    return game


def _totals_match() -> bool:
    for player in Player.objects.all():
        points = Answer.objects.filter(player=player).aggregate(total=Sum("points"))["total"] or 0
        if player.score != points:
            return False
    return True


async def test_a_crash_mid_batch_scores_nothing_and_a_restart_scores_everything_once(game: Game) -> None:
    await sync_to_async(_answered_game)(game, 12)
    real_update = Player.objects.filter

    calls = {"n": 0}

    # The first call moves the totals, the second reads them back: by then every
    # answer of the batch is marked and every total moved.
    def crash_on_the_totals_read(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("the worker process died")
        return real_update(*args, **kwargs)

    crashed = ScoringWorker()
    with mock.patch("quiz.services.scores.Player.objects.filter", side_effect=crash_on_the_totals_read):
        with pytest.raises(RuntimeError):
            await crashed.score_once()
    # The transaction rolled back: no answer is marked, no total moved.
    assert await Answer.objects.filter(scored_at__isnull=False).acount() == 0
    assert await Player.objects.filter(score__gt=0).acount() == 0

    restarted = ScoringWorker()
    scored = await restarted.score_once()
    assert sorted(item.answer_id for item in scored) == sorted(
        await sync_to_async(lambda: list(Answer.objects.values_list("pk", flat=True)))()
    )
    assert await restarted.score_once() == []
    assert await Answer.objects.filter(scored_at__isnull=True).acount() == 0
    assert await sync_to_async(_totals_match)()


async def test_two_workers_never_score_the_same_answer_twice(game: Game) -> None:
    await sync_to_async(_answered_game)(game, 20)
    first, second = ScoringWorker(), ScoringWorker()
    batches = [await first.score_once(), await second.score_once(), await first.score_once()]
    scored_ids = [item.answer_id for batch in batches for item in batch]
    assert len(scored_ids) == len(set(scored_ids)) == 20
    assert await sync_to_async(_totals_match)()


async def test_ranks_and_totals_follow_the_scores(game: Game) -> None:
    await sync_to_async(_answered_game)(game, 6)
    scored = await ScoringWorker().score_once()
    by_player = {item.player_id: item for item in scored}
    scores = await sync_to_async(lambda: dict(Player.objects.values_list("pk", "score")))()
    for player_id, item in by_player.items():
        assert item.score == scores[player_id]
        assert item.rank == 1 + sum(1 for s in scores.values() if s > item.score)
        assert item.players == 6
