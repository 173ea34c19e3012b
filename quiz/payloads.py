"""The JSON events the game publishes (what clients receive on each channel).

Question payloads never carry the correct answer until the reveal. Every event
also carries the ``identifier`` its publication gave it (realtime.operations.relay): a
client that hears one twice (delivery is at least once) drops the repeat.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from .models import Game, Question


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def game_state(game: Game) -> dict[str, Any]:
    return {"type": "state", "code": game.code, "title": game.title, "state": game.state}


def question_public(question: Question, index: int, total: int) -> dict[str, Any]:
    return {
        "id": question.pk,
        "index": index,
        "total": total,
        "text": question.text,
        "choices": list(question.choices),
        "time_limit": question.time_limit,
        "points": question.points,
    }


def question_opened(game: Game, question: Question, index: int, total: int) -> dict[str, Any]:
    closes_at = game.question_closes_at
    remaining = (closes_at - timezone.now()).total_seconds() if closes_at else question.time_limit
    return {
        "type": "question",
        "code": game.code,
        "state": game.state,
        "question": question_public(question, index, total),
        "opened_at": _iso(game.question_opened_at),
        "closes_at": _iso(closes_at),
        "closes_in": max(0.0, round(remaining, 3)),
    }


def question_revealed(game: Game, question: Question, counts: list[int]) -> dict[str, Any]:
    return {
        "type": "reveal",
        "code": game.code,
        "state": game.state,
        "question_id": question.pk,
        "correct_choice": question.correct_choice,
        "counts": counts,
    }


def next_game(game: Game, rematch: Game) -> dict[str, Any]:
    """The invitation to the rematch of a finished game (quiz.services.game_play_again)."""
    return {"type": "next_game", "code": game.code, "next_game": rematch.code}


def leaderboard(
    game: Game, top: list[dict[str, Any]], players: int, answered: int | None, final: bool = False
) -> dict[str, Any]:
    return {
        "type": "leaderboard",
        "code": game.code,
        "state": game.state,
        "players": players,
        "answered": answered,
        "question_id": game.current_question_id,
        "final": final,
        "top": top,
    }


def progress(game: Game, players: int, answered: int | None) -> dict[str, Any]:
    """For the host and the big screen: how many have joined and answered."""
    return {
        "type": "progress",
        "code": game.code,
        "state": game.state,
        "players": players,
        "answered": answered,
        "question_id": game.current_question_id,
    }


@dataclass(frozen=True, slots=True)
class Score:
    """One scored answer: made by the worker's scoring transaction, published as the player's frame.

    The only shape a score has between the scoring query and the ``score``
    event (:meth:`event`) on the player's channel.
    """

    answer_id: int
    player_id: int
    game_id: int
    game_code: str
    question_id: int
    correct: bool
    # Points this answer earned, and the player's total once the batch is counted.
    delta: int
    score: int
    # Competition rank of ``score`` among the game's ``players``.
    rank: int
    players: int
    received_at: datetime

    def event(self) -> dict[str, Any]:
        """The ``score`` event: what the player learns about their answer."""
        return {
            "type": "score",
            "question_id": self.question_id,
            "correct": self.correct,
            "delta": self.delta,
            "score": self.score,
            "rank": self.rank,
            "players": self.players,
        }
