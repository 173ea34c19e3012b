"""Writes of answers: stored fast and unscored; the worker scores them (services.scores).

Answers move the host's live answer count: the game's progress feed is marked
stale in the same transaction (quiz.coalescer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from .. import signals
from ..batching import GroupCommit
from ..conf import quiz_settings
from ..exceptions import AlreadyAnswered, InvalidChoice, InvalidPlayerToken, NotAnswerable
from ..models import Answer, Feed, Game, GameState, Player, token_hash
from .feeds import feeds_mark_stale
from .rows import insert_each_once


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
        for index, _answer in insert_each_once(fresh):
            results[index] = AlreadyAnswered()  # answered through another process meanwhile
        # The host's answer counts moved; the leaderboard waits for the scores.
        answered_games = {answer.game_id for index, answer in fresh if results[index] is None}
        feeds_mark_stale(game_ids=answered_games, kinds=[Feed.Kind.PROGRESS])
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
