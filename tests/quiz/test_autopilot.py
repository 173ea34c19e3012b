"""The show runs itself when asked: automatic reveal when time is up, automatic next after a pause."""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.test import override_settings

from quiz import services
from quiz.autopilot import Autopilot
from quiz.exceptions import InvalidTransition
from quiz.models import Game, GameState
from realtime.models import Namespace

from .conftest import QUESTIONS

pytestmark = pytest.mark.django_db(transaction=True)


def _game(host: User, **auto: object) -> Game:
    question_set = services.question_set_import(data=QUESTIONS)
    return services.game_open(game=services.game_create(host=host, question_set=question_set, **auto))


def _reload(game: Game) -> Game:
    return Game.objects.get(pk=game.pk)


def test_without_the_autopilot_nothing_is_ever_due(quiz_namespace: Namespace, host: User) -> None:
    game = services.game_start(game=_game(host))
    assert game.next_step_at is None
    game = services.game_reveal(game=game)
    assert game.next_step_at is None
    assert services.games_step_due(now=game.question_opened_at + timedelta(days=1)) == []


@override_settings(QUIZ={"ANSWER_GRACE": 1.0, "CACHE_TTL": 0})
def test_each_step_comes_when_due_and_not_before(quiz_namespace: Namespace, host: User) -> None:
    game = services.game_start(game=_game(host, auto_reveal=True, auto_next=5.0))
    # The reveal is due when the answers stop being taken: the deadline plus the grace.
    assert game.question_closes_at is not None
    assert game.next_step_at == game.question_closes_at + timedelta(seconds=1)
    assert services.games_step_due(now=game.next_step_at - timedelta(milliseconds=1)) == []
    assert _reload(game).state == GameState.QUESTION

    (revealed,) = services.games_step_due(now=game.next_step_at)
    assert (revealed.pk, revealed.state) == (game.pk, GameState.REVEAL)
    revealed = _reload(game)
    # The next question follows the reveal by auto_next seconds.
    assert revealed.next_step_at is not None
    assert revealed.next_step_at - revealed.updated_at < timedelta(seconds=5.1)

    services.games_step_due(now=revealed.next_step_at)
    second = _reload(game)
    assert (second.state, second.question_index) == (GameState.QUESTION, 1)
    services.games_step_due(now=second.next_step_at)
    assert _reload(game).state == GameState.REVEAL
    # After the last question's reveal: the podium.
    services.games_step_due(now=_reload(game).next_step_at)
    finished = _reload(game)
    assert (finished.state, finished.next_step_at) == (GameState.FINISHED, None)


def test_the_host_can_be_first_the_autopilot_then_does_nothing(quiz_namespace: Namespace, host: User) -> None:
    game = services.game_start(game=_game(host, auto_reveal=True))
    due = game.next_step_at
    assert due is not None
    # The host reveals early: with no auto_next nothing more is planned, and the old step is gone.
    game = services.game_reveal(game=game)
    assert game.next_step_at is None
    assert services.games_step_due(now=due + timedelta(seconds=1)) == []
    assert _reload(game).state == GameState.REVEAL


def test_auto_next_has_a_range(quiz_namespace: Namespace, host: User) -> None:
    question_set = services.question_set_import(data=QUESTIONS)
    with pytest.raises(ValidationError):
        services.game_create(host=host, question_set=question_set, auto_next=-1.0)
    with pytest.raises(ValidationError):
        services.game_create(host=host, question_set=question_set, auto_next=601.0)


@override_settings(QUIZ={"ANSWER_GRACE": 0.0, "CACHE_TTL": 0, "AUTOPILOT_POLL": 5.0})
async def test_a_game_runs_to_the_podium_with_no_host(quiz_namespace: Namespace, host: User) -> None:
    short = {
        "title": "Short",
        "questions": [{**question, "time_limit": 1.0} for question in QUESTIONS["questions"]],
    }

    def short_game() -> Game:
        question_set = services.question_set_import(data=short)
        game = services.game_create(host=host, question_set=question_set, auto_reveal=True, auto_next=0.2)
        return services.game_start(game=services.game_open(game=game))

    game = await sync_to_async(short_game)()
    autopilot = Autopilot()
    task = asyncio.ensure_future(autopilot.run())
    try:
        # Two questions of a second each, two reveals and the finish: well within the poll.
        # The state is a row another thread writes: there is nothing to await but the row.
        async with asyncio.timeout(4.0):
            while (await Game.objects.aget(pk=game.pk)).state != GameState.FINISHED:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert autopilot.steps_taken == 4  # reveal, next, reveal, finish


def test_play_again_invites_the_players_to_a_new_game_of_the_same_set(
    quiz_namespace: Namespace, host: User
) -> None:
    from realtime.models import PendingPublication

    game = services.game_start(game=_game(host, auto_reveal=True, auto_next=3.0))
    with pytest.raises(InvalidTransition):
        services.game_play_again(game=game, host=host)
    game = services.game_finish(game=game)
    rematch = services.game_play_again(game=game, host=host)
    assert rematch.code != game.code
    assert (rematch.state, rematch.question_set_id, rematch.title) == (
        GameState.LOBBY,
        game.question_set_id,
        game.title,
    )
    assert (rematch.auto_reveal, rematch.auto_next) == (True, 3.0)
    assert _reload(game).next_game_id == rematch.pk
    # Asking twice gives the same rematch, announced once.
    assert services.game_play_again(game=_reload(game), host=host).pk == rematch.pk
    invitations = [row for row in PendingPublication.objects.filter(key=f"quiz.{game.pk}.next_game")]
    assert len(invitations) == 1
