"""Reads a page catches up with: the leaderboard as it stood when the open question was asked."""

from __future__ import annotations

import pytest
from django.test import Client, override_settings

from quiz import selectors, services
from quiz.models import Game, Player
from quiz.ranking import RankBook
from quiz.services.feeds import feed_broadcast
from tests.openapi import assert_documented

pytestmark = pytest.mark.django_db


def _score() -> None:
    assert services.answers_score_pending(limit=100, ranks=RankBook())


def test_the_board_before_a_question_leaves_out_that_questions_points(game: Game) -> None:
    ada, _ = services.player_join(code=game.code, nickname="ada")
    bob, _ = services.player_join(code=game.code, nickname="bob")
    cy, _ = services.player_join(code=game.code, nickname="cy")
    # Question 1 (the answer is choice 1): Ada right, Bob and Cy wrong.
    game = services.game_start(game=game)
    services.answer_submit(player=ada, question_id=game.current_question_id, choice=1)
    services.answer_submit(player=bob, question_id=game.current_question_id, choice=0)
    _score()
    game = services.game_next(game=services.game_reveal(game=game))
    after_first = {p.nickname: p.score for p in Player.objects.all()}
    assert after_first["ada"] > 0 and after_first["bob"] == after_first["cy"] == 0

    # Question 2 (choice 0), still open: Bob and Cy are right, so the live board moves.
    services.answer_submit(player=bob, question_id=game.current_question_id, choice=0)
    services.answer_submit(player=cy, question_id=game.current_question_id, choice=0)
    _score()
    live = selectors.leaderboard_top(game_id=game.pk, limit=10)
    assert [row["nickname"] for row in live][1:] == ["bob", "cy"] and live[1]["score"] > 0

    before = selectors.leaderboard_before_question(game=game)
    assert before["type"] == "leaderboard" and before["state"] == "question"
    assert before["players"] == 3 and before["answered"] == 2
    assert before["question_id"] == game.current_question_id and before["final"] is False
    # Bob and Cy tie on 0 for 2nd (competition ranks, join order within the tie).
    assert before["top"] == [
        {"rank": 1, "player_id": ada.pk, "nickname": "ada", "score": after_first["ada"]},
        {"rank": 2, "player_id": bob.pk, "nickname": "bob", "score": 0},
        {"rank": 2, "player_id": cy.pk, "nickname": "cy", "score": 0},
    ]


def test_the_state_snapshot_carries_the_board_before_the_open_question_only(
    client: Client, game: Game
) -> None:
    ada, _ = services.player_join(code=game.code, nickname="ada")
    url = f"/api/quiz/games/{game.code}"
    assert "leaderboard_before" not in client.get(url).json()  # the lobby

    game = services.game_start(game=game)
    services.answer_submit(player=ada, question_id=game.current_question_id, choice=1)
    _score()
    asking = client.get(url)
    assert_documented(asking, "GET", "/api/quiz/games/{code}")
    board = asking.json()["leaderboard_before"]
    assert board["top"] == [{"rank": 1, "player_id": ada.pk, "nickname": "ada", "score": 0}]
    assert board["players"] == 1 and board["answered"] == 1

    services.game_reveal(game=game)
    assert "leaderboard_before" not in client.get(url).json()


def test_cached_reads_follow_a_transition_and_a_leaderboard_broadcast_at_once(
    game: Game, django_capture_on_commit_callbacks
) -> None:
    ada, _ = services.player_join(code=game.code, nickname="ada")
    with override_settings(QUIZ={"CACHE_TTL": 60, "LEADERBOARD_INTERVAL": 0}):
        assert selectors.game_state_cached(code=game.code)["state"] == "lobby"
        assert selectors.leaderboard_cached(code=game.code)["top"][0]["score"] == 0

        with django_capture_on_commit_callbacks(execute=True):
            game = services.game_start(game=game)
        # A cached snapshot would say "lobby" for a minute more.
        assert selectors.game_state_cached(code=game.code)["state"] == "question"

        services.answer_submit(player=ada, question_id=game.current_question_id, choice=1)
        _score()
        with django_capture_on_commit_callbacks(execute=True):
            feed_broadcast(game_id=game.pk)
        scored = Player.objects.get(pk=ada.pk).score
        assert scored > 0
        assert selectors.leaderboard_cached(code=game.code)["top"][0]["score"] == scored
