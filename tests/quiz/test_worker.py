"""Scoring cannot lose an answer or score one twice, nor lose or repeat a score's frame:
crashes roll back, restarts resume."""

from __future__ import annotations

from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.db.models import Sum

from quiz import services
from quiz.models import Answer, Game, Player
from quiz.worker import ScoringWorker
from realtime.models import PendingPublication

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


def _score_rows() -> list[tuple[str, str, list[dict]]]:
    return list(
        PendingPublication.objects.filter(key__startswith="quiz.score.")
        .order_by("key")
        .values_list("key", "channel", "events")
    )


async def test_each_score_is_written_for_the_relay_in_the_scoring_transaction(game: Game) -> None:
    game = await sync_to_async(_answered_game)(game, 3)
    scored = await ScoringWorker().score_once()

    # No relay runs here: the frames wait in the table, one per answer, as they will be published.
    assert await sync_to_async(_score_rows)() == sorted(
        (
            f"quiz.score.{score.answer_id}",
            f"/quiz/{game.code}/players/{score.player_id}",
            [{**score.event(), "identifier": f"quiz.score.{score.answer_id}"}],
        )
        for score in scored
    )


async def test_a_crash_before_the_scoring_commit_leaves_no_score_and_no_frame(game: Game) -> None:
    await sync_to_async(_answered_game)(game, 5)

    # The last write of the scoring transaction: every score and frame is written by then.
    with mock.patch("quiz.services.scores.feeds_mark_stale", side_effect=RuntimeError("the worker died")):
        with pytest.raises(RuntimeError):
            await ScoringWorker().score_once()
    assert await Answer.objects.filter(scored_at__isnull=False).acount() == 0
    assert await sync_to_async(_score_rows)() == []

    scored = await ScoringWorker().score_once()
    answer_ids = await sync_to_async(lambda: sorted(Answer.objects.values_list("pk", flat=True)))()
    assert sorted(score.answer_id for score in scored) == answer_ids
    assert [key for key, _, _ in await sync_to_async(_score_rows)()] == sorted(
        f"quiz.score.{answer_id}" for answer_id in answer_ids
    )
