"""Writes of games: creation and the host's transitions (lobby → question → reveal → … → finished).

Every transition is one transaction that locks the game row. What it announces
is written in the same transaction (quiz.broadcasts) and published after the
commit, so no client hears of a state that could still roll back, and none
misses one because a process stopped; the leaderboard and the host's progress
show the new state with the game's next feed broadcast.
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from .. import broadcasts, signals
from ..conf import quiz_settings
from ..exceptions import InvalidTransition
from ..models import Game, GameState, QuestionSet
from ..selectors import answer_counts, game_cache_forget, game_questions, games_due
from .feeds import feeds_create, feeds_mark_stale

logger = logging.getLogger(__name__)

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 6


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def game_create(
    *,
    host: Any,
    question_set: QuestionSet,
    title: str = "",
    auto_reveal: bool = False,
    auto_next: float | None = None,
) -> Game:
    """A new game in DRAFT, with a fresh join code.

    ``auto_reveal``: the answer is revealed when the question's time is up;
    ``auto_next``: seconds after a reveal before the next question (or the
    podium). Both are done by the autopilot (quiz.autopilot), with no host page open.

    Raises:
        ValidationError: ``auto_next`` out of its range.
    """
    for _ in range(10):
        try:
            with transaction.atomic():
                game = Game(
                    code=_new_code(),
                    title=title or question_set.title,
                    question_set=question_set,
                    host=host,
                    auto_reveal=auto_reveal,
                    auto_next=auto_next,
                )
                game.full_clean(exclude=["code", "question_set", "host"], validate_unique=False)
                game.save()
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
    # After the commit, reads see the new state at once (not a cached older one),
    # and this process's autopilot looks at the game's next step.
    transaction.on_commit(lambda: game_cache_forget(code=game.code))
    transaction.on_commit(lambda: signals.game_changed.send(sender=Game, game_ids=[game.pk]))


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
    # Answers are taken until the deadline plus the grace: the autopilot reveals after both.
    game.next_step_at = (
        game.question_closes_at + timedelta(seconds=quiz_settings.answer_grace) if game.auto_reveal else None
    )
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
    game.next_step_at = now + timedelta(seconds=game.auto_next) if game.auto_next is not None else None
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
    game.next_step_at = None
    game.save(update_fields=["state", "next_step_at", "updated_at"])
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


@transaction.atomic
def game_step(*, game: Game, now: datetime | None = None) -> Game | None:
    """The autopilot's step of a game whose ``next_step_at`` has come: QUESTION → REVEAL,
    REVEAL → the next QUESTION, or FINISHED after the last one.

    Returns the game moved on, or ``None`` when its step is not due (any more):
    the host or another process was first, or the host turned the autopilot off.
    """
    now = now or timezone.now()
    locked = _locked(game)
    if locked.next_step_at is None or locked.next_step_at > now:
        return None
    if locked.state == GameState.QUESTION:
        return game_reveal(game=locked)
    if locked.state == GameState.REVEAL:
        if locked.question_index + 1 < len(game_questions(game=locked)):
            return game_next(game=locked)
        return game_finish(game=locked)
    locked.next_step_at = None  # a state the autopilot has nothing to do in
    locked.save(update_fields=["next_step_at"])
    return None


def games_step_due(*, now: datetime | None = None) -> list[Game]:
    """Take every due step (:func:`game_step`), each game in its own transaction."""
    moved = []
    for game in games_due(now=now or timezone.now()):
        try:
            stepped = game_step(game=game, now=now)
        except InvalidTransition as error:
            logger.info("game %s: the autopilot's step was refused (%s)", game.code, error)
            continue
        if stepped is not None:
            moved.append(stepped)
    return moved


@transaction.atomic
def game_play_again(*, game: Game, host: Any) -> Game:
    """A finished game's rematch: a new game of the same set and settings, its lobby open.

    The players of ``game`` are invited on its channel (their pages offer to
    join under the same nickname), and so is every page that catches up with it
    later (the finished game's state names its next game). Asking again gives
    the same new game.

    Raises:
        InvalidTransition: ``game`` is not finished.
    """
    game = _locked(game)
    if game.state != GameState.FINISHED:
        raise InvalidTransition("Only a finished game can be played again.")
    if game.next_game is not None:
        return game.next_game
    rematch = game_open(
        game=game_create(
            host=host,
            question_set=game.question_set,
            title=game.title,
            auto_reveal=game.auto_reveal,
            auto_next=game.auto_next,
        )
    )
    game.next_game = rematch
    game.save(update_fields=["next_game", "updated_at"])
    broadcasts.next_game(game, rematch)
    return rematch
