"""Writes of scores: the worker's batch, scored once and crash-safe (DESIGN §8)."""

from __future__ import annotations

from typing import Any

from django.db import connection, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from ..exceptions import ConcurrentScoring
from ..models import Answer, Player
from ..scoring import points_for


def answers_score_pending(*, limit: int) -> list[dict[str, Any]]:
    """Score up to ``limit`` unscored answers, oldest first, in one transaction.

    Idempotent and crash-safe: the answers are marked scored and their points
    added to the players' totals in the same transaction, and only if all of them
    were still unscored, so a crash rolls both back and a retry never scores
    twice. On PostgreSQL concurrent workers skip each other's rows (``SKIP
    LOCKED``); on SQLite the transaction holds the write lock from its first read.

    Returns one dict per answer scored now: ``answer_id``, ``player_id``,
    ``game_id``, ``game_code``, ``question_id``, ``correct``, ``delta``, ``score``,
    ``received_at``.

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
        results: list[dict[str, Any]] = []
        deltas: dict[int, int] = {}
        for answer in answers:
            question = answer.question
            scored = points_for(
                correct=answer.choice == question.correct_choice,
                points=question.points,
                time_limit=question.time_limit,
                elapsed=answer.elapsed,
            )
            deltas[answer.player_id] = deltas.get(answer.player_id, 0) + scored.points
            results.append(
                {
                    "answer_id": answer.pk,
                    "player_id": answer.player_id,
                    "game_id": answer.game_id,
                    "game_code": answer.game.code,
                    "question_id": question.pk,
                    "correct": scored.correct,
                    "delta": scored.points,
                    "received_at": answer.received_at,
                }
            )
        # One statement for the batch instead of one per answer and one per player.
        marked = Answer.objects.filter(pk__in=[r["answer_id"] for r in results], scored_at=None).update(
            scored_at=now,
            correct=Case(
                When(pk__in=[r["answer_id"] for r in results if r["correct"]], then=Value(True)),
                default=Value(False),
            ),
            points=Case(
                *(When(pk=r["answer_id"], then=Value(r["delta"])) for r in results if r["delta"]),
                default=Value(0),
            ),
        )
        if marked != len(results):
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
    for result in results:
        result["score"] = totals.get(result["player_id"], 0)
    return results
