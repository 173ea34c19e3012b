"""Writes of the game show (STYLE habit 11): keyword-only, typed, ``<entity>_<action>``.

Every state change is one transaction; what it announces goes out through
``realtime.publish`` only after the commit (``transaction.on_commit``), so no
client ever hears of a row that could still roll back.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import realtime

from . import channels, payloads, signals
from .exceptions import (
    AlreadyAnswered,
    GameNotFound,
    GameNotJoinable,
    InvalidChoice,
    InvalidTransition,
    NicknameTaken,
    NotAnswerable,
)
from .models import Answer, Game, GameState, Player, Question, QuestionSet

CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I
CODE_LENGTH = 6
JOINABLE = (GameState.LOBBY, GameState.QUESTION, GameState.REVEAL)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _announce(channel: str, event: dict[str, Any]) -> None:
    transaction.on_commit(lambda: realtime.publish(channel, [event]))


# -- question sets -----------------------------------------------------------


@transaction.atomic
def question_set_import(*, data: dict[str, Any]) -> QuestionSet:
    """Create a question set from ``{"title", "questions": [{"text", "choices",
    "correct", "time_limit"?, "points"?}]}``.

    Raises:
        ValidationError: a missing field or an invalid question.
    """
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list) or not data["questions"]:
        raise ValidationError("A question set is an object with a title and a non-empty list of questions.")
    question_set = QuestionSet.objects.create(title=str(data.get("title") or "Untitled"))
    for order, raw in enumerate(data["questions"]):
        if not isinstance(raw, dict):
            raise ValidationError(f"Question {order + 1} is not an object.")
        question = Question(
            question_set=question_set,
            order=order,
            text=raw.get("text", ""),
            choices=raw.get("choices"),
            correct_choice=raw.get("correct", raw.get("correct_choice")),
            time_limit=raw.get("time_limit", 20.0),
            points=raw.get("points", 1000),
        )
        try:
            question.full_clean(exclude=["question_set"])
        except ValidationError as error:
            raise ValidationError(f"Question {order + 1}: {'; '.join(error.messages)}") from None
        question.save()
    return question_set


# -- games ---------------------------------------------------------------------


def _new_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


def game_create(*, host: Any, question_set: QuestionSet, title: str = "") -> Game:
    """A new game in DRAFT, with a fresh join code."""
    for _ in range(10):
        try:
            with transaction.atomic():
                return Game.objects.create(
                    code=_new_code(), title=title or question_set.title, question_set=question_set, host=host
                )
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
    _announce(channels.game_channel(game.code), payloads.game_state(game))
    return game


def _questions(game: Game) -> list[Question]:
    return list(game.question_set.questions.order_by("order", "pk"))


def _ask(game: Game, index: int) -> Game:
    questions = _questions(game)
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
    _announce(
        channels.game_channel(game.code), payloads.question_opened(game, question, index, len(questions))
    )
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
    counts = answer_counts(question=question)
    _announce(channels.game_channel(game.code), payloads.question_revealed(game, question, counts))
    return game


@transaction.atomic
def game_finish(*, game: Game) -> Game:
    """Any state but FINISHED → FINISHED."""
    game = _locked(game)
    _transition(game, (GameState.DRAFT, GameState.LOBBY, GameState.QUESTION, GameState.REVEAL), "finish")
    game.state = GameState.FINISHED
    game.save(update_fields=["state", "updated_at"])
    _announce(channels.game_channel(game.code), payloads.game_state(game))
    transaction.on_commit(lambda: signals.leaderboard_changed.send(sender=Game, game_id=game.pk, final=True))
    return game


def answer_counts(*, question: Question) -> list[int]:
    from django.db.models import Count

    counts = [0] * len(question.choices)
    for row in Answer.objects.filter(question=question).values("choice").annotate(n=Count("id")):
        if 0 <= row["choice"] < len(counts):
            counts[row["choice"]] = row["n"]
    return counts


# -- players -------------------------------------------------------------------


def player_join(*, code: str, nickname: str) -> tuple[Player, str]:
    """Add a player; returns the row (committed) and the player's secret token.

    Raises:
        GameNotFound, GameNotJoinable, NicknameTaken, ValidationError.
    """
    nickname = nickname.strip()
    if not 1 <= len(nickname) <= 40:
        raise ValidationError("A nickname is 1 to 40 characters.")
    game = Game.objects.filter(code=code).only("pk", "state", "code").first()
    if game is None:
        raise GameNotFound()
    if game.state not in JOINABLE:
        raise GameNotJoinable()
    token = secrets.token_urlsafe(24)
    try:
        with transaction.atomic():
            player = Player.objects.create(game=game, nickname=nickname, token_hash=token_hash(token))
    except IntegrityError:
        raise NicknameTaken() from None
    signals.player_joined.send(sender=Player, player=player, game=game)
    return player, token


def player_for_token(*, token: str) -> Player | None:
    return Player.objects.select_related("game").filter(token_hash=token_hash(token)).first()


# -- answers -------------------------------------------------------------------


def answer_submit(*, player: Player, question_id: int, choice: int) -> Answer:
    """Store an answer, unscored; the worker scores it (DESIGN §8).

    Raises:
        NotAnswerable: the game is not asking this question, or time is up.
        InvalidChoice: ``choice`` is not an index of the question's choices.
        AlreadyAnswered: this player answered this question before.
    """
    from .conf import quiz_settings

    received_at = timezone.now()
    game = Game.objects.select_related("current_question").get(pk=player.game_id)
    question = game.current_question
    if game.state != GameState.QUESTION or question is None or question.pk != question_id:
        raise NotAnswerable()
    deadline = game.question_closes_at
    if deadline is not None and received_at > deadline + timedelta(seconds=quiz_settings.answer_grace):
        raise NotAnswerable("Time is up for this question.")
    if isinstance(choice, bool) or not isinstance(choice, int) or not 0 <= choice < len(question.choices):
        raise InvalidChoice()
    try:
        with transaction.atomic():
            opened_at = game.question_opened_at or received_at
            answer = Answer.objects.create(
                game=game,
                player=player,
                question=question,
                choice=choice,
                received_at=received_at,
                elapsed=(received_at - opened_at).total_seconds(),
            )
    except IntegrityError:
        raise AlreadyAnswered() from None
    signals.answer_received.send(sender=Answer, answer=answer)
    return answer


def answer_matches(*, player: Player, question_id: Any, choice: Any) -> bool:
    """Whether the player's stored answer to ``question_id`` is ``choice`` (an idempotent retry)."""
    return Answer.objects.filter(player=player, question_id=question_id, choice=choice).exists()


# -- scoring -------------------------------------------------------------------


def answers_score_pending(*, limit: int) -> list[dict[str, Any]]:
    """Score up to ``limit`` unscored answers, oldest first, in one transaction.

    Idempotent and crash-safe: an answer is marked scored and its points added
    to the player's total in the same transaction, and only if it was still
    unscored, so a crash rolls both back and a retry never scores twice. On
    PostgreSQL concurrent workers skip each other's rows (``SKIP LOCKED``).

    Returns one dict per answer scored now: ``answer_id``, ``player_id``,
    ``game_id``, ``game_code``, ``question_id``, ``correct``, ``delta``, ``score``.
    """
    from django.db import connection
    from django.db.models import F

    from .scoring import points_for

    now = timezone.now()
    with transaction.atomic():
        pending = Answer.objects.filter(scored_at=None).order_by("received_at", "pk")
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True, of=("self",))
        answers = list(pending.select_related("question", "game")[:limit])
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
            updated = Answer.objects.filter(pk=answer.pk, scored_at=None).update(
                scored_at=now, correct=scored.correct, points=scored.points
            )
            if not updated:
                continue
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
                }
            )
        for player_id, delta in deltas.items():
            if delta:
                Player.objects.filter(pk=player_id).update(score=F("score") + delta)
        totals = dict(Player.objects.filter(pk__in=deltas).values_list("pk", "score"))
    for result in results:
        result["score"] = totals.get(result["player_id"], 0)
    return results
