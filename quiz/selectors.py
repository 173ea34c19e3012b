"""Reads of the game show (STYLE habit 11); the read-heavy ones are cached briefly."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db.models import Count, F, Min, OuterRef, Subquery
from django.db.models.functions import Coalesce

from . import payloads
from .conf import quiz_settings
from .models import Answer, Feed, Game, Player, Question, QuestionSet, rejoin_code_for, token_hash


def game_get(*, code: str) -> Game | None:
    return Game.objects.select_related("current_question", "next_game").filter(code=code).first()


def game_exists(*, code: str) -> bool:
    return Game.objects.filter(code=code).exists()


def game_questions(*, game: Game) -> list[Question]:
    """The game's questions in the order they are asked."""
    return list(game.question_set.questions.order_by("order", "pk"))


def question_set_get(*, pk: Any) -> QuestionSet | None:
    return QuestionSet.objects.filter(pk=pk).first()


def question_sets_list() -> list[QuestionSet]:
    """Every question set, newest first, each with ``question_count``."""
    return list(
        QuestionSet.objects.annotate(question_count=Count("questions")).order_by("-created_at", "-pk")
    )


def games_recent(*, limit: int = 20) -> list[Game]:
    """The latest games, each with ``player_count``."""
    return list(
        Game.objects.select_related("question_set")
        .annotate(player_count=Count("players"))
        .order_by("-created_at", "-pk")[:limit]
    )


def games_due(*, now: datetime) -> list[Game]:
    """Games whose automatic step (quiz.autopilot) is due at ``now``, the most overdue first."""
    return list(Game.objects.filter(next_step_at__lte=now).order_by("next_step_at"))


def games_next_step_at() -> datetime | None:
    """When the next automatic step of any game is due, or ``None`` when none is planned."""
    return Game.objects.filter(next_step_at__isnull=False).aggregate(at=Min("next_step_at"))["at"]


def question_count(*, question_set: QuestionSet) -> int:
    return question_set.questions.count()


def player_for_token(*, token: str) -> Player | None:
    """The player (with their game) whose secret token this is, or ``None``."""
    return Player.objects.select_related("game").filter(token_hash=token_hash(token)).first()


def answer_counts(*, question: Question) -> list[int]:
    """How many answers each choice of ``question`` has, in choice order."""
    counts = [0] * len(question.choices)
    for row in Answer.objects.filter(question=question).values("choice").annotate(n=Count("id")):
        if 0 <= row["choice"] < len(counts):
            counts[row["choice"]] = row["n"]
    return counts


def leaderboard_top(*, game_id: int, limit: int) -> list[dict[str, Any]]:
    """The top players by score (ties by join order), with competition ranks."""
    rows = list(
        Player.objects.filter(game_id=game_id)
        .order_by("-score", "pk")
        .values("id", "nickname", "score")[:limit]
    )
    return _ranked(rows)


def _ranked(rows: list[dict[str, Any]], score: str = "score") -> list[dict[str, Any]]:
    """Rows of ``id``, ``nickname`` and a score, best first, as entries with competition ranks."""
    top: list[dict[str, Any]] = []
    for position, row in enumerate(rows):
        rank = top[-1]["rank"] if top and top[-1]["score"] == row[score] else position + 1
        top.append({"rank": rank, "player_id": row["id"], "nickname": row["nickname"], "score": row[score]})
    return top


def leaderboard_before_question(*, game: Game) -> dict[str, Any]:
    """The leaderboard as it stood when the current question opened.

    Every score without the points of its answer to that question. While a question is
    open the pages keep showing these standings (scores that move would give the answer
    away before the reveal), so a page loaded mid-question needs them too.
    """
    earned = Answer.objects.filter(player=OuterRef("pk"), question_id=game.current_question_id).values(
        "points"
    )[:1]
    rows = list(
        Player.objects.filter(game_id=game.pk)
        .annotate(before=F("score") - Coalesce(Subquery(earned), 0))
        .order_by("-before", "pk")
        .values("id", "nickname", "before")[: quiz_settings.leaderboard_size]
    )
    return payloads.leaderboard(
        game,
        _ranked(rows, score="before"),
        player_count(game_id=game.pk),
        answered_count(question_id=game.current_question_id),
    )


def player_count(*, game_id: int) -> int:
    return Player.objects.filter(game_id=game_id).count()


def answered_count(*, question_id: int | None) -> int | None:
    if question_id is None:
        return None
    return Answer.objects.filter(question_id=question_id).count()


def player_rank(*, game_id: int, score: int) -> int:
    """Competition rank from the (game, score) index."""
    return Player.objects.filter(game_id=game_id, score__gt=score).count() + 1


def games_with_stale_feeds() -> list[int]:
    """Games with a leaderboard or progress change not broadcast yet (quiz.coalescer)."""
    return list(Feed.objects.filter(stale=True).values_list("game_id", flat=True).distinct())


def leaderboard_payload(*, game: Game, final: bool = False) -> dict[str, Any]:
    return payloads.leaderboard(
        game,
        leaderboard_top(game_id=game.pk, limit=quiz_settings.leaderboard_size),
        player_count(game_id=game.pk),
        answered_count(question_id=game.current_question_id),
        final=final,
    )


def _cached(key: str, compute: Any) -> Any:
    ttl = quiz_settings.cache_ttl
    if ttl <= 0:
        return compute()
    value = cache.get(key)
    if value is None:
        value = compute()
        cache.set(key, value, ttl)
    return value


def game_state_cached(*, code: str) -> dict[str, Any] | None:
    """Game state and current question, cached for CACHE_TTL.

    While a question is open it comes without its answer, with the leaderboard as it
    stood when the question opened; during the reveal the answer and the answer counts
    come too, so a client that reloads catches up.
    """

    def compute() -> dict[str, Any] | None:
        game = game_get(code=code)
        if game is None:
            return {}
        state = payloads.game_state(game)
        if game.state == "finished":
            # A page that missed the invitation to the rematch still gets it.
            state["next_game"] = game.next_game.code if game.next_game_id else None
        question = game.current_question
        if question is not None and game.state in ("question", "reveal"):
            total = game.question_set.questions.count()
            state["question"] = payloads.question_public(question, game.question_index, total)
            state["closes_at"] = game.question_closes_at.isoformat() if game.question_closes_at else None
            if game.state == "question":
                state["leaderboard_before"] = leaderboard_before_question(game=game)
            if game.state == "reveal":
                state["correct_choice"] = question.correct_choice
                state["counts"] = answer_counts(question=question)
        return state

    value = _cached(_state_key(code), compute)
    return value or None


def leaderboard_cached(*, code: str) -> dict[str, Any] | None:
    def compute() -> dict[str, Any]:
        game = game_get(code=code)
        return leaderboard_payload(game=game) if game is not None else {}

    value = _cached(_leaderboard_key(code), compute)
    return value or None


def game_cache_forget(*, code: str) -> None:
    """The game moved on (a committed transition): the next reads compute its state and board afresh."""
    cache.delete_many([_state_key(code), _leaderboard_key(code)])


def leaderboard_cache_put(*, code: str, leaderboard: dict[str, Any]) -> None:
    """These standings were just broadcast: reads serve them from now on, not older ones."""
    ttl = quiz_settings.cache_ttl
    if ttl > 0:
        cache.set(_leaderboard_key(code), leaderboard, ttl)


def _state_key(code: str) -> str:
    return f"quiz:state:{code}"


def _leaderboard_key(code: str) -> str:
    return f"quiz:leaderboard:{code}"


def player_standing(*, player: Player) -> dict[str, Any]:
    """A player's own score, rank and answered questions (their page after a reload)."""
    answered = list(
        Answer.objects.filter(player=player)
        .order_by("question_id")
        .values("question_id", "choice", "scored_at", "correct", "points")
    )
    return {
        "player_id": player.pk,
        "nickname": player.nickname,
        "score": player.score,
        "rank": player_rank(game_id=player.game_id, score=player.score),
        "players": player_count(game_id=player.game_id),
        "rejoin_code": rejoin_code_for(player.token_hash),
        "answers": [
            {
                "question_id": row["question_id"],
                "choice": row["choice"],
                "scored": row["scored_at"] is not None,
                "correct": row["correct"],
                "points": row["points"],
            }
            for row in answered
        ],
    }
