"""Writes of games: creation and the host's transitions (lobby → question → reveal → … → finished).

Every transition is one transaction that locks the game row. What it announces
is written in the same transaction (quiz.broadcasts) and published after the
commit, so no client hears of a state that could still roll back, and none
misses one because a process stopped; the leaderboard and the host's progress
show the new state with the game's next feed broadcast.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import broadcasts
from ..exceptions import InvalidTransition
from ..models import Game, GameState, QuestionSet
from ..selectors import answer_counts, game_questions
from .feeds import feeds_create, feeds_mark_stale

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 6


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def game_create(*, host: Any, question_set: QuestionSet, title: str = "") -> Game:
    """A new game in DRAFT, with a fresh join code."""
    for _ in range(10):
        try:
            with transaction.atomic():
                game = Game.objects.create(
                    code=_new_code(), title=title or question_set.title, question_set=question_set, host=host
                )
                feeds_create(game=game)
                return game
        except IntegrityError:
            continue
    raise RuntimeError("could not find a free game code")


def _locked(game: Game) -> Game:
    return Game.objects.select_for_update().get(pk=game.pk)


def _transition(game: Game, allowed: tuple[str, ...], action: str) -> None:
    if game.state not in allowed:
        raise InvalidTransition(f"Cannot {action} a game that is in state {game.state!r}.")


@transaction.atomic
def game_open(*, game: Game) -> Game:
    """DRAFT → LOBBY: players may join."""
    game = _locked(game)
    _transition(game, (GameState.DRAFT,), "open")
    game.state = GameState.LOBBY
    game.save(update_fields=["state", "updated_at"])
    broadcasts.game_state(game)
    feeds_mark_stale(game_ids=[game.pk])
    return game


def _ask(game: Game, index: int) -> Game:
    questions = game_questions(game=game)
    if index >= len(questions):
        raise InvalidTransition("There is no next question; finish the game instead.")
    question = questions[index]
    now = timezone.now()
    game.state = GameState.QUESTION
    game.question_index = index
    game.current_question = question
    game.question_opened_at = now
    game.question_closes_at = now + timedelta(seconds=question.time_limit)
    game.save()
    broadcasts.question_opened(game, question, index, len(questions))
    feeds_mark_stale(game_ids=[game.pk])
    return game


@transaction.atomic
def game_start(*, game: Game) -> Game:
    """LOBBY → QUESTION: the first question goes out."""
    game = _locked(game)
    _transition(game, (GameState.LOBBY,), "start")
    return _ask(game, 0)


@transaction.atomic
def game_next(*, game: Game) -> Game:
    """REVEAL → QUESTION: the next question goes out."""
    game = _locked(game)
    _transition(game, (GameState.REVEAL,), "move to the next question of")
    return _ask(game, game.question_index + 1)


@transaction.atomic
def game_reveal(*, game: Game) -> Game:
    """QUESTION → REVEAL: the right answer and the answer counts go out."""
    game = _locked(game)
    _transition(game, (GameState.QUESTION,), "reveal")
    now = timezone.now()
    game.state = GameState.REVEAL
    if game.question_closes_at is None or game.question_closes_at > now:
        game.question_closes_at = now  # revealing closes the question early
    game.save()
    question = game.current_question
    assert question is not None
    broadcasts.question_revealed(game, question, answer_counts(question=question))
    feeds_mark_stale(game_ids=[game.pk])
    return game


@transaction.atomic
def game_finish(*, game: Game) -> Game:
    """Any state but FINISHED → FINISHED."""
    game = _locked(game)
    _transition(game, (GameState.DRAFT, GameState.LOBBY, GameState.QUESTION, GameState.REVEAL), "finish")
    game.state = GameState.FINISHED
    game.save(update_fields=["state", "updated_at"])
    broadcasts.game_state(game)
    # The final leaderboard: its feed broadcast says final, and so do later ones.
    feeds_mark_stale(game_ids=[game.pk])
    return game


# The host's controls, by the name in their URL (``POST /api/quiz/games/<code>/<action>``).
GAME_TRANSITIONS = {
    "open": game_open,
    "start": game_start,
    "next": game_next,
    "reveal": game_reveal,
    "finish": game_finish,
}
