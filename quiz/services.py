"""Writes of the game show (STYLE habit 11): keyword-only, typed, ``<entity>_<action>``.

Every state change is one transaction; what it announces goes out through
``realtime.publish`` only after the commit (``transaction.on_commit``), so no
client ever hears of a row that could still roll back.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

import realtime

from . import channels, payloads, signals
from .batching import GroupCommit
from .exceptions import (
    AlreadyAnswered,
    ConcurrentScoring,
    GameNotFound,
    GameNotJoinable,
    InvalidChoice,
    InvalidNickname,
    InvalidPlayerToken,
    InvalidTransition,
    NicknameTaken,
    NotAnswerable,
)
from .models import Answer, Game, GameState, Player, Question, QuestionSet, nickname_clean

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


# The host's controls, by the name in their URL (``POST /api/quiz/games/<code>/<action>``).
GAME_TRANSITIONS = {
    "open": game_open,
    "start": game_start,
    "next": game_next,
    "reveal": game_reveal,
    "finish": game_finish,
}


def answer_counts(*, question: Question) -> list[int]:
    from django.db.models import Count

    counts = [0] * len(question.choices)
    for row in Answer.objects.filter(question=question).values("choice").annotate(n=Count("id")):
        if 0 <= row["choice"] < len(counts):
            counts[row["choice"]] = row["n"]
    return counts


# -- players -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinRequest:
    code: str
    nickname: str


def players_join(*, requests: Sequence[JoinRequest]) -> list[tuple[Player, str] | Exception]:
    """Add several players in one transaction (:func:`player_join` for each).

    Returns one entry per request, in order: ``(player, token)`` once committed,
    or the error :func:`player_join` would raise for it. Raises only when the
    transaction fails, and then stored none of them.
    """
    results: list[tuple[Player, str] | Exception | None] = [None] * len(requests)
    nicknames: list[str] = []
    for index, request in enumerate(requests):
        try:
            nicknames.append(nickname_clean(request.nickname))
        except InvalidNickname as error:
            results[index] = error
            nicknames.append("")  # a placeholder; the request is already answered
    stored: list[tuple[int, Player, str]] = []
    with transaction.atomic():
        games = {
            game.code: game
            for game in Game.objects.filter(code__in={request.code for request in requests}).only(
                "pk", "state", "code"
            )
        }
        taken = set(
            Player.objects.filter(game__in=list(games.values()), nickname__in=set(nicknames)).values_list(
                "game_id", "nickname"
            )
        )
        for index, (request, nickname) in enumerate(zip(requests, nicknames, strict=True)):
            if results[index] is not None:
                continue  # its nickname breaks the rule
            game = games.get(request.code)
            if game is None:
                results[index] = GameNotFound()
            elif game.state not in JOINABLE:
                results[index] = GameNotJoinable()
            elif (game.pk, nickname) in taken:
                results[index] = NicknameTaken()
            else:
                taken.add((game.pk, nickname))
                token = secrets.token_urlsafe(24)
                stored.append(
                    (index, Player(game=game, nickname=nickname, token_hash=token_hash(token)), token)
                )
        for index, _player in _insert_each_once([(index, player) for index, player, _ in stored]):
            results[index] = NicknameTaken()  # taken by another process since the check above
    for index, player, token in stored:
        if results[index] is None:
            results[index] = (player, token)
            signals.player_joined.send(sender=Player, player=player, game=player.game)
    return [result for result in results if result is not None]


def _insert_each_once(rows: list[tuple[int, Any]]) -> list[tuple[int, Any]]:
    """Insert model instances in one statement; returns those a unique constraint refused.

    The rows were checked against the database in this transaction; only a
    concurrent writer (another process on PostgreSQL) can still take one, and
    then they go in one by one, each in its own savepoint.
    """
    if not rows:
        return []
    model = type(rows[0][1])
    try:
        with transaction.atomic():
            model.objects.bulk_create([instance for _, instance in rows])
        return []
    except IntegrityError:
        pass
    refused = []
    for index, instance in rows:
        instance.pk = None
        try:
            with transaction.atomic():
                instance.save(force_insert=True)
        except IntegrityError:
            refused.append((index, instance))
    return refused


def player_join(*, code: str, nickname: str) -> tuple[Player, str]:
    """Add a player; returns the row (committed) and the player's secret token.

    Raises:
        GameNotFound, GameNotJoinable, NicknameTaken, InvalidNickname.
    """
    (result,) = players_join(requests=[JoinRequest(code=code, nickname=nickname)])
    if isinstance(result, Exception):
        raise result
    return result


_joins: GroupCommit[JoinRequest, tuple[Player, str]] = GroupCommit(
    lambda requests: players_join(requests=requests)
)


async def aplayer_join(*, code: str, nickname: str) -> tuple[Player, str]:
    """:func:`player_join` from async code: joins arriving together share one transaction."""
    return await _joins.submit(JoinRequest(code=code, nickname=nickname))


def player_for_token(*, token: str) -> Player | None:
    return Player.objects.select_related("game").filter(token_hash=token_hash(token)).first()


# -- answers -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    """One answer as it arrived: the game addressed, and the player by id or by token."""

    code: str
    question_id: Any
    choice: Any
    received_at: datetime
    player_id: int | None = None
    token: str | None = None


def answers_submit(*, requests: Sequence[AnswerRequest]) -> list[Answer | Exception]:
    """Store several answers, unscored, in one transaction (:func:`answer_submit` for each).

    The game's state is read in the same transaction, so each answer is checked
    against the question open at that moment; ``received_at`` is when the answer
    reached the server (its speed bonus and the deadline go by it, not by when the
    batch was written).

    Returns one entry per request, in order: the stored :class:`Answer`, or its
    error (InvalidPlayerToken, NotAnswerable, InvalidChoice, AlreadyAnswered with
    ``stored_choice``). Raises only when the transaction fails, and then stored none.
    """
    from .conf import quiz_settings

    grace = timedelta(seconds=quiz_settings.answer_grace)
    results: list[Answer | Exception | None] = [None] * len(requests)
    hashes = {token_hash(request.token): request.token for request in requests if request.token is not None}
    fresh: list[tuple[int, Answer]] = []
    with transaction.atomic():
        player_games: dict[int, int] = dict(
            Player.objects.filter(
                pk__in={r.player_id for r in requests if r.player_id is not None}
            ).values_list("pk", "game_id")
        )
        by_token: dict[str, int] = {}
        for digest, player_id, game_id in Player.objects.filter(token_hash__in=hashes).values_list(
            "token_hash", "pk", "game_id"
        ):
            by_token[hashes[digest]] = player_id
            player_games[player_id] = game_id
        games = {
            game.pk: game
            for game in Game.objects.select_related("current_question").filter(
                pk__in=set(player_games.values())
            )
        }
        player_ids = [
            by_token.get(request.token) if request.token is not None else request.player_id
            for request in requests
        ]
        stored_choices = {
            (player_id, question_id): choice
            for player_id, question_id, choice in Answer.objects.filter(
                player_id__in={pid for pid in player_ids if pid is not None},
                question_id__in={game.current_question_id for game in games.values()},
            ).values_list("player_id", "question_id", "choice")
        }
        for index, (request, player_id) in enumerate(zip(requests, player_ids, strict=True)):
            game = games.get(player_games.get(player_id, -1)) if player_id is not None else None
            if game is None or game.code != request.code:
                results[index] = InvalidPlayerToken()
                continue
            question = game.current_question
            if game.state != GameState.QUESTION or question is None or question.pk != request.question_id:
                results[index] = NotAnswerable()
                continue
            deadline = game.question_closes_at
            if deadline is not None and request.received_at > deadline + grace:
                results[index] = NotAnswerable("Time is up for this question.")
                continue
            choice = request.choice
            if (
                isinstance(choice, bool)
                or not isinstance(choice, int)
                or not 0 <= choice < len(question.choices)
            ):
                results[index] = InvalidChoice()
                continue
            key = (player_id, question.pk)
            if key in stored_choices:
                results[index] = AlreadyAnswered(stored_choice=stored_choices[key])
                continue
            stored_choices[key] = choice
            opened_at = game.question_opened_at or request.received_at
            answer = Answer(
                game=game,
                player_id=player_id,
                question=question,
                choice=choice,
                received_at=request.received_at,
                elapsed=(request.received_at - opened_at).total_seconds(),
            )
            fresh.append((index, answer))
        for index, _answer in _insert_each_once(fresh):
            results[index] = AlreadyAnswered()  # answered through another process meanwhile
    for index, answer in fresh:
        if results[index] is None:
            results[index] = answer
            signals.answer_received.send(sender=Answer, answer=answer)
    return [result for result in results if result is not None]


def answer_submit(*, player: Player, question_id: int, choice: int) -> Answer:
    """Store an answer, unscored; the worker scores it (DESIGN §8).

    Raises:
        NotAnswerable: the game is not asking this question, or time is up.
        InvalidChoice: ``choice`` is not an index of the question's choices.
        AlreadyAnswered: this player answered this question before.
    """
    request = AnswerRequest(
        code=player.game.code,
        question_id=question_id,
        choice=choice,
        received_at=timezone.now(),
        player_id=player.pk,
    )
    (result,) = answers_submit(requests=[request])
    if isinstance(result, Exception):
        raise result
    return result


_answers: GroupCommit[AnswerRequest, Answer] = GroupCommit(lambda requests: answers_submit(requests=requests))


async def aanswer_submit(request: AnswerRequest) -> Answer:
    """:func:`answers_submit` for one answer from async code: answers arriving together
    share one transaction.

    Raises:
        InvalidPlayerToken, NotAnswerable, InvalidChoice, AlreadyAnswered; or the
        batch's database error (nothing of the batch was stored).
    """
    return await _answers.submit(request)


# -- scoring -------------------------------------------------------------------


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
    from django.db import connection
    from django.db.models import Case, F, Value, When

    from .scoring import points_for

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
