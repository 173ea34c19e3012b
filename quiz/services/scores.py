"""Writes of scores: the worker's batch, scored once and crash-safe (DESIGN §8)."""

from __future__ import annotations

from collections.abc import Collection

from django.db import connection, transaction
from django.db.models import Case, Count, F, Value, When
from django.utils import timezone

from .. import broadcasts
from ..exceptions import ConcurrentScoring
from ..models import Answer, Feed, Player
from ..payloads import Score
from ..ranking import RankBook
from ..scoring import points_for
from .feeds import feeds_mark_stale


def answers_score_pending(*, limit: int, ranks: RankBook) -> list[Score]:
    """Score up to ``limit`` unscored answers, oldest first, in one transaction.

    Idempotent and crash-safe: the answers are marked scored, their points added
    to the players' totals and each player's score frame written for the relay
    (quiz.broadcasts) in the same transaction, and only if all of the answers
    were still unscored, so a crash rolls all of it back and a retry never scores
    or announces twice. On PostgreSQL concurrent workers skip each other's rows
    (``SKIP LOCKED``); on SQLite the transaction holds the write lock from its
    first read. The games whose totals moved get their leaderboard marked stale.

    Args:
        limit: the most answers to score.
        ranks: the worker's ranks, moved by this batch (a game it does not hold
            yet is loaded from the database, this batch included). After a
            failure the caller must clear it: it may hold the rolled-back batch.

    Returns:
        One :class:`~quiz.payloads.Score` per answer scored now, in scoring order.

    Raises:
        ConcurrentScoring: another worker scored some of these answers meanwhile
            (a database without row locks or write-locking transactions); nothing
            was scored, the next call starts over.
    """
    now = timezone.now()
    with transaction.atomic():
        pending = Answer.objects.filter(scored_at=None).order_by("received_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True, of=("self",))
        answers = list(pending.select_related("question", "game")[:limit])
        if not answers:
            return []
        results = [
            points_for(
                correct=answer.choice == answer.question.correct_choice,
                points=answer.question.points,
                time_limit=answer.question.time_limit,
                elapsed=answer.elapsed,
            )
            for answer in answers
        ]
        deltas: dict[int, int] = {}
        player_games: dict[int, int] = {}
        for answer, result in zip(answers, results, strict=True):
            deltas[answer.player_id] = deltas.get(answer.player_id, 0) + result.points
            player_games[answer.player_id] = answer.game_id
        # One statement for the batch instead of one per answer and one per player.
        marked = Answer.objects.filter(pk__in=[answer.pk for answer in answers], scored_at=None).update(
            scored_at=now,
            correct=Case(
                When(
                    pk__in=[a.pk for a, result in zip(answers, results, strict=True) if result.correct],
                    then=Value(True),
                ),
                default=Value(False),
            ),
            points=Case(
                *(
                    When(pk=answer.pk, then=Value(result.points))
                    for answer, result in zip(answers, results, strict=True)
                    if result.points
                ),
                default=Value(0),
            ),
        )
        if marked != len(answers):
            raise ConcurrentScoring()
        moved = {player_id: delta for player_id, delta in deltas.items() if delta}
        if moved:
            Player.objects.filter(pk__in=moved).update(
                score=F("score")
                + Case(
                    *(When(pk=player_id, then=Value(delta)) for player_id, delta in moved.items()), default=0
                )
            )
        totals = dict(Player.objects.filter(pk__in=deltas).values_list("pk", "score"))
        game_ids = set(player_games.values())
        _move_ranks(ranks, game_ids, moved, totals, player_games)
        players = dict(
            Player.objects.filter(game_id__in=game_ids)
            .values("game_id")
            .annotate(n=Count("id"))
            .values_list("game_id", "n")
        )
        scores = []
        for answer, result in zip(answers, results, strict=True):
            total = totals.get(answer.player_id, 0)
            scores.append(
                Score(
                    answer_id=answer.pk,
                    player_id=answer.player_id,
                    game_id=answer.game_id,
                    game_code=answer.game.code,
                    question_id=answer.question_id,
                    correct=result.correct,
                    delta=result.points,
                    score=total,
                    rank=ranks.rank(answer.game_id, total),
                    players=players.get(answer.game_id, 0),
                    received_at=answer.received_at,
                )
            )
        broadcasts.scores(scores)
        # A batch of wrong answers changes no standing: no leaderboard for it.
        feeds_mark_stale(game_ids={player_games[p] for p in moved}, kinds=[Feed.Kind.LEADERBOARD])
    return scores


def _move_ranks(
    ranks: RankBook,
    game_ids: Collection[int],
    moved: dict[int, int],
    totals: dict[int, int],
    player_games: dict[int, int],
) -> None:
    """Bring ``ranks`` up to this batch: games it lacks are read (the batch is in them)."""
    fresh = {game_id for game_id in game_ids if game_id not in ranks}
    for game_id in fresh:
        scores = Player.objects.filter(game_id=game_id, score__gt=0).values_list("score", flat=True)
        ranks.load(game_id, list(scores))
    for player_id, delta in moved.items():
        game_id = player_games[player_id]
        if game_id not in fresh:
            ranks.move(game_id, totals[player_id] - delta, totals[player_id])
