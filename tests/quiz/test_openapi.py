"""The quiz API answers as the OpenAPI document says: a whole game, and its errors."""

from __future__ import annotations

import re
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import AsyncClient, override_settings

from quiz import services
from quiz.models import Game, Player, Question, rejoin_code_for, token_hash
from tests.openapi import assert_documented

from .conftest import QUESTIONS

pytestmark = pytest.mark.django_db(transaction=True)

GAMES = "/api/quiz/games"


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


async def staff(host: User) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(host)
    return client


async def post(client: AsyncClient, url: str, body: Any = None, **kwargs: Any) -> Any:
    if body is None:
        return await client.post(url, **kwargs)
    return await client.post(url, body, content_type="application/json", **kwargs)


def without_time(body: dict[str, Any], *names: str) -> dict[str, Any]:
    """A copy of ``body`` without the clock readings ``names`` (each must be set)."""
    body = dict(body)
    for name in names:
        assert body.pop(name), f"{name} is set"
    return body


# external_worker: the answer stays unscored while the test reads it back.
@pytest.mark.usefixtures("quiz_namespace", "external_worker")
async def test_a_whole_game_over_http_is_what_the_document_describes(host: User) -> None:
    host_client = await staff(host)

    imported = await post(host_client, "/api/quiz/question-sets", QUESTIONS)
    set_id = imported.json()["id"]
    assert (imported.status_code, imported.json()) == (201, {"id": set_id, "questions": 2})
    assert_documented(imported, "POST", "/api/quiz/question-sets")

    created = await post(host_client, GAMES, {"question_set": set_id})
    code = created.json()["code"]
    assert (created.status_code, created.json()) == (
        201,
        {"code": code, "state": "draft", "title": "Test set", "auto_reveal": False, "auto_next": None},
    )
    assert_documented(created, "POST", GAMES)

    opened = await post(host_client, f"{GAMES}/{code}/open")
    assert (opened.status_code, opened.json()) == (
        200,
        {"code": code, "state": "lobby", "question_index": -1},
    )
    assert_documented(opened, "POST", f"{GAMES}/{{code}}/{{action}}")

    joined = await post(AsyncClient(), f"{GAMES}/{code}/join", {"nickname": " ada "})
    body = joined.json()
    player_id, token = body["player_id"], body["token"]
    assert (joined.status_code, body) == (
        201,
        {
            "player_id": player_id,
            "nickname": "ada",
            "token": token,
            "game": code,
            "channels": {
                "game": f"/quiz/{code}/game",
                "leaderboard": f"/quiz/{code}/leaderboard",
                "player": f"/quiz/{code}/players/{player_id}",
                "answers": f"/quiz/{code}/answers",
            },
            "rejoin_code": rejoin_code_for(token_hash(token)),
        },
    )
    assert re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", body["rejoin_code"])
    assert_documented(joined, "POST", f"{GAMES}/{{code}}/join")

    started = await post(host_client, f"{GAMES}/{code}/start")
    assert started.json() == {"code": code, "state": "question", "question_index": 0}
    question = await Question.objects.filter(question_set_id=set_id, order=0).aget()

    state = await AsyncClient().get(f"{GAMES}/{code}")
    assert (state.status_code, state["Cache-Control"]) == (200, "public, max-age=1")
    assert without_time(state.json(), "server_time", "closes_at") == {
        "type": "state",
        "code": code,
        "title": "Test set",
        "state": "question",
        "question": {
            "id": question.pk,
            "index": 0,
            "total": 2,
            "text": "2 + 2?",
            "choices": ["3", "4", "5"],
            "time_limit": 30.0,
            "points": 1000,
        },
        "leaderboard_before": {
            "type": "leaderboard",
            "code": code,
            "state": "question",
            "players": 1,
            "answered": 0,
            "question_id": question.pk,
            "final": False,
            "top": [{"rank": 1, "player_id": player_id, "nickname": "ada", "score": 0}],
        },
    }
    assert_documented(state, "GET", f"{GAMES}/{{code}}")

    bearer = {"authorization": f"Bearer {token}"}
    answered = await post(
        AsyncClient(), f"{GAMES}/{code}/answers", {"question_id": question.pk, "choice": 1}, headers=bearer
    )
    answer_id = answered.json()["answer_id"]
    assert (answered.status_code, answered.json()) == (202, {"answer_id": answer_id, "status": "accepted"})
    assert_documented(answered, "POST", f"{GAMES}/{{code}}/answers")

    me = await AsyncClient().get(f"{GAMES}/{code}/me", headers=bearer)
    assert (me.status_code, me["Cache-Control"]) == (200, "private, no-store")
    assert me.json() == {
        "player_id": player_id,
        "nickname": "ada",
        "score": 0,
        "rank": 1,
        "players": 1,
        "rejoin_code": body["rejoin_code"],
        "answers": [{"question_id": question.pk, "choice": 1, "scored": False, "correct": None, "points": 0}],
    }
    assert_documented(me, "GET", f"{GAMES}/{{code}}/me")

    # Ada's phone is lost: on another device, her nickname and code bring her back with her answer.
    wrong = await post(AsyncClient(), f"{GAMES}/{code}/rejoin", {"nickname": "ada", "rejoin_code": "AAAAAA"})
    assert (wrong.status_code, wrong.json()) == (
        403,
        error("rejoin_refused", "This rejoin code does not match this nickname."),
    )
    assert_documented(wrong, "POST", f"{GAMES}/{{code}}/rejoin")
    back = await post(
        AsyncClient(),
        f"{GAMES}/{code}/rejoin",
        {"nickname": "ada", "rejoin_code": body["rejoin_code"].lower()},
    )
    new_token = back.json()["token"]
    assert (back.status_code, back.json()) == (
        200,
        {**body, "token": new_token, "rejoin_code": rejoin_code_for(token_hash(new_token))},
    )
    assert new_token != token and back.json()["rejoin_code"] != body["rejoin_code"]
    assert_documented(back, "POST", f"{GAMES}/{{code}}/rejoin")
    old = await AsyncClient().get(f"{GAMES}/{code}/me", headers=bearer)
    assert old.status_code == 401
    bearer = {"authorization": f"Bearer {new_token}"}
    again = await AsyncClient().get(f"{GAMES}/{code}/me", headers=bearer)
    assert again.json()["answers"] == me.json()["answers"]

    board = await AsyncClient().get(f"{GAMES}/{code}/leaderboard")
    assert board.json() == {
        "type": "leaderboard",
        "code": code,
        "state": "question",
        "players": 1,
        "answered": 1,
        "question_id": question.pk,
        "final": False,
        "top": [{"rank": 1, "player_id": player_id, "nickname": "ada", "score": 0}],
    }
    assert_documented(board, "GET", f"{GAMES}/{{code}}/leaderboard")

    revealed = await post(host_client, f"{GAMES}/{code}/reveal")
    assert revealed.json() == {"code": code, "state": "reveal", "question_index": 0}
    catch_up = await host_client.get(f"/quiz/{code}/host/game.json")
    assert catch_up.status_code == 200
    assert without_time(catch_up.json(), "server_time", "opened_at", "closes_at")["counts"] == [0, 1, 0]
    assert_documented(catch_up, "GET", "/quiz/{code}/host/game.json")

    finished = await post(host_client, f"{GAMES}/{code}/finish")
    assert finished.json()["state"] == "finished"
    again = await post(host_client, f"{GAMES}/{code}/play-again")
    rematch = again.json()["code"]
    assert (again.status_code, again.json()) == (
        201,
        {"code": rematch, "state": "lobby", "title": "Test set", "auto_reveal": False, "auto_next": None},
    )
    assert_documented(again, "POST", f"{GAMES}/{{code}}/play-again")
    over = await AsyncClient().get(f"{GAMES}/{code}")
    assert without_time(over.json(), "server_time") == {
        "type": "state",
        "code": code,
        "title": "Test set",
        "state": "finished",
        "next_game": rematch,
    }
    assert_documented(over, "GET", f"{GAMES}/{{code}}")
    automatic = await post(
        host_client, GAMES, {"question_set": set_id, "auto_reveal": True, "auto_next": 8, "title": "Auto"}
    )
    assert (automatic.status_code, automatic.json()["auto_reveal"], automatic.json()["auto_next"]) == (
        201,
        True,
        8.0,
    )
    assert_documented(automatic, "POST", GAMES)


BAD_NICKNAME = error("bad_request", "nickname: A nickname is 1 to 40 characters.")
FORM = error(
    "unsupported_media_type", 'Unsupported media type "application/x-www-form-urlencoded" in request.'
)


@pytest.mark.parametrize(
    ("body", "content_type", "status", "expected"),
    [
        ({"nickname": " "}, "application/json", 400, BAD_NICKNAME),
        ("{nope", "application/json", 400, None),
        ("nickname=ada", "application/x-www-form-urlencoded", 415, FORM),
    ],
    ids=["bad nickname", "not json", "a form"],
)
async def test_a_bad_join_is_a_documented_error(game: Game, body, content_type, status, expected) -> None:
    response = await AsyncClient().post(f"{GAMES}/{game.code}/join", body, content_type=content_type)

    assert response.status_code == status
    if expected is None:
        assert response.json()["error"]["code"] == "parse_error"
        assert response.json()["error"]["message"].startswith("JSON parse error - Expecting property name")
    else:
        assert response.json() == expected
    assert_documented(response, "POST", f"{GAMES}/{{code}}/join")
    assert await Player.objects.acount() == 0


async def test_joins_refused_by_admission_and_by_the_game_are_documented(game: Game) -> None:
    url = f"{GAMES}/{game.code}/join"
    with override_settings(QUIZ={"WORKER": "external", "JOIN_RATE": "1/m"}):
        first = await post(AsyncClient(), url, {"nickname": "ada"})
        throttled = await post(AsyncClient(), url, {"nickname": "bob"})
    taken = await post(AsyncClient(), url, {"nickname": "ada"})
    missing = await post(AsyncClient(), f"{GAMES}/NOPE99/join", {"nickname": "cy"})

    assert first.status_code == 201
    assert (throttled.status_code, throttled.json()) == (
        429,
        error("throttled", "Too many joins right now; retry after the indicated delay."),
    )
    assert 1 <= int(throttled["Retry-After"]) <= 60
    assert (taken.status_code, taken.json()) == (
        409,
        error("nickname_taken", "Another player in this game has this nickname."),
    )
    assert (missing.status_code, missing.json()) == (404, error("game_not_found", "No game has this code."))
    for response in (throttled, taken, missing):
        assert_documented(response, "POST", f"{GAMES}/{{code}}/join")


async def test_a_join_during_a_database_outage_is_the_documented_503(game: Game) -> None:
    with mock.patch("quiz.services.players.Player.objects.bulk_create", side_effect=OperationalError("gone")):
        response = await post(AsyncClient(), f"{GAMES}/{game.code}/join", {"nickname": "ada"})

    assert (response.status_code, response["Retry-After"], response.json()) == (
        503,
        "2",
        error("unavailable", "The service is temporarily unavailable; retry shortly."),
    )
    assert_documented(response, "POST", f"{GAMES}/{{code}}/join")


async def test_refused_answers_are_documented(game: Game) -> None:
    _, token = await sync_to_async(services.player_join)(code=game.code, nickname="ada")
    game = await sync_to_async(services.game_start)(game=game)
    url = f"{GAMES}/{game.code}/answers"
    bearer = {"authorization": f"Bearer {token}"}

    no_token = await post(AsyncClient(), url, {"question_id": game.current_question_id, "choice": 0})
    text_choice = await post(
        AsyncClient(), url, {"question_id": game.current_question_id, "choice": "1"}, headers=bearer
    )
    no_such_choice = await post(
        AsyncClient(), url, {"question_id": game.current_question_id, "choice": 3}, headers=bearer
    )
    other_question = await post(AsyncClient(), url, {"question_id": 0, "choice": 0}, headers=bearer)

    assert (no_token.status_code, no_token.json()) == (
        401,
        error("invalid_player_token", "A valid player token is required."),
    )
    assert (text_choice.status_code, text_choice.json()) == (
        400,
        error("bad_request", "choice: A valid integer is required."),
    )
    assert (no_such_choice.status_code, no_such_choice.json()) == (
        400,
        error("invalid_choice", "The choice is not one of the question's choices."),
    )
    assert (other_question.status_code, other_question.json()) == (
        409,
        error("not_answerable", "This question is not open for answers."),
    )
    for response in (no_token, text_choice, no_such_choice, other_question):
        assert_documented(response, "POST", f"{GAMES}/{{code}}/answers")


async def test_the_hosts_endpoints_refuse_everyone_but_staff_as_documented(game: Game) -> None:
    player = await sync_to_async(User.objects.create_user)("someone", password="pw-someone-123")
    signed_in = AsyncClient()
    await signed_in.aforce_login(player)

    refused = [
        (await post(AsyncClient(), f"{GAMES}/{game.code}/start"), "POST", f"{GAMES}/{{code}}/{{action}}"),
        (await post(signed_in, GAMES, {"question_set": game.question_set_id}), "POST", GAMES),
        (await post(signed_in, "/api/quiz/question-sets", QUESTIONS), "POST", "/api/quiz/question-sets"),
        (await signed_in.get(f"/quiz/{game.code}/host/game.json"), "GET", "/quiz/{code}/host/game.json"),
    ]

    for response, method, path in refused:
        assert (response.status_code, response.json()) == (403, error("forbidden", "Staff only.")), path
        assert_documented(response, method, path)


async def test_the_hosts_mistakes_are_documented_errors(game: Game, host: User) -> None:
    client = await staff(host)

    unknown = await post(client, f"{GAMES}/{game.code}/explode")
    too_early = await post(client, f"{GAMES}/{game.code}/reveal")
    no_game = await post(client, f"{GAMES}/NOPE99/start")
    no_set = await post(client, GAMES, {"question_set": 999_999})
    not_a_set = await post(client, GAMES, {"question_set": "first"})
    bad_set = await post(client, "/api/quiz/question-sets", {"title": "Empty", "questions": []})

    assert (unknown.status_code, unknown.json()) == (400, error("bad_request", "Unknown action 'explode'."))
    assert (too_early.status_code, too_early.json()["error"]["code"]) == (409, "invalid_transition")
    assert (no_game.status_code, no_game.json()) == (404, error("game_not_found", "No game has this code."))
    assert (no_set.status_code, no_set.json()) == (
        404,
        error("question_set_not_found", "No question set has this id."),
    )
    assert (not_a_set.status_code, not_a_set.json()) == (
        400,
        error("bad_request", "question_set: A valid integer is required."),
    )
    assert (bad_set.status_code, bad_set.json()) == (
        400,
        error("bad_request", "A question set is an object with a title and a non-empty list of questions."),
    )
    for response in (unknown, too_early, no_game):
        assert_documented(response, "POST", f"{GAMES}/{{code}}/{{action}}")
    for response in (no_set, not_a_set):
        assert_documented(response, "POST", GAMES)
    assert_documented(bad_set, "POST", "/api/quiz/question-sets")

    set_id = game.question_set_id
    slow = await post(client, GAMES, {"question_set": set_id, "auto_next": 601})
    vague = await post(client, GAMES, {"question_set": set_id, "auto_next": "soon"})
    unsure = await post(client, GAMES, {"question_set": set_id, "auto_reveal": "yes"})
    not_over = await post(client, f"{GAMES}/{game.code}/play-again")
    assert (slow.status_code, slow.json()) == (
        400,
        error("bad_request", "Ensure this value is less than or equal to 600.0."),
    )
    assert (vague.status_code, vague.json()) == (
        400,
        error("bad_request", "auto_next: A number of seconds, or null."),
    )
    assert (unsure.status_code, unsure.json()) == (400, error("bad_request", "auto_reveal: true or false."))
    assert (not_over.status_code, not_over.json()) == (
        409,
        error("invalid_transition", "Only a finished game can be played again."),
    )
    for response in (slow, vague, unsure):
        assert_documented(response, "POST", GAMES)
    assert_documented(not_over, "POST", f"{GAMES}/{{code}}/play-again")


async def test_a_method_an_endpoint_does_not_have_is_the_documented_405(game: Game) -> None:
    response = await post(AsyncClient(), f"{GAMES}/{game.code}", {})
    missing = await AsyncClient().get(f"{GAMES}/NOPE99/leaderboard")

    assert (response.status_code, response["Allow"], response.json()) == (
        405,
        "GET, HEAD",
        error("method_not_allowed", 'Method "POST" not allowed.'),
    )
    assert_documented(response, "GET", f"{GAMES}/{{code}}")
    assert (missing.status_code, missing.json()) == (404, error("game_not_found", "No game has this code."))
    assert_documented(missing, "GET", f"{GAMES}/{{code}}/leaderboard")
