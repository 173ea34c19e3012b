"""The quiz HTTP API: joins (admission control), answers, cached reads, the host's controls."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.test import AsyncClient, Client, override_settings

from quiz import services
from quiz.models import Answer, Game, Player

pytestmark = pytest.mark.django_db(transaction=True)

QUIZ = {"WORKER": "external", "CACHE_TTL": 0}


async def join(client: AsyncClient, code: str, nickname: str, **kwargs: Any) -> Any:
    return await client.post(
        f"/api/quiz/games/{code}/join", {"nickname": nickname}, content_type="application/json", **kwargs
    )


async def test_a_join_is_201_with_the_token_and_the_player_is_stored(game: Game) -> None:
    response = await join(AsyncClient(), game.code, " ada ")
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"player_id", "nickname", "token", "game", "channels", "rejoin_code"}
    player = await Player.objects.aget(pk=body["player_id"])
    assert (player.nickname, player.game_id) == ("ada", game.pk)
    assert player.token_hash == services.token_hash(body["token"]) and body["token"] not in player.token_hash


async def test_a_taken_nickname_is_409_and_an_unknown_game_404(game: Game) -> None:
    client = AsyncClient()
    assert (await join(client, game.code, "ada")).status_code == 201
    taken = await join(client, game.code, "ada")
    assert (taken.status_code, taken.json()) == (
        409,
        {"error": {"code": "nickname_taken", "message": "Another player in this game has this nickname."}},
    )
    missing = await join(client, "NOPE99", "ada")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "game_not_found")


@pytest.mark.parametrize("nickname", ["", "   ", "x" * 41])
async def test_a_bad_nickname_is_400(game: Game, nickname: str) -> None:
    response = await join(AsyncClient(), game.code, nickname)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_a_join_that_is_not_a_json_post_gets_the_apis_error_shape(game: Game) -> None:
    url = f"/api/quiz/games/{game.code}/join"
    client = AsyncClient()

    not_json = await client.post(url, "{nickname", content_type="application/json")
    form = await client.post(url, {"nickname": "ada"})
    get = await client.get(url)

    assert (not_json.status_code, not_json.json()["error"]["code"]) == (400, "parse_error")
    assert (form.status_code, form.json()["error"]) == (
        415,
        {
            "code": "unsupported_media_type",
            "message": 'Unsupported media type "multipart/form-data" in request.',
        },
    )
    assert (get.status_code, get["Allow"], get.json()) == (
        405,
        "POST",
        {"error": {"code": "method_not_allowed", "message": 'Method "GET" not allowed.'}},
    )
    assert await Player.objects.acount() == 0


async def test_a_join_during_a_database_outage_is_503_with_retry_after(game: Game) -> None:
    with mock.patch("quiz.models.Player.objects.bulk_create", side_effect=OperationalError("disk I/O error")):
        response = await join(AsyncClient(), game.code, "ada")

    assert (response.status_code, response["Retry-After"]) == (503, "2")
    assert response.json()["error"]["code"] == "unavailable"
    assert await Player.objects.acount() == 0


async def test_a_redis_failover_under_a_cached_read_is_503_with_retry_after(
    game: Game, caplog: pytest.LogCaptureFixture
) -> None:
    from redis.asyncio.sentinel import MasterNotFoundError

    failing = mock.Mock(side_effect=MasterNotFoundError("No master found for 'main'"))
    with override_settings(QUIZ={**QUIZ, "CACHE_TTL": 2}), mock.patch("quiz.selectors.cache.get", failing):
        response = await AsyncClient().get(f"/api/quiz/games/{game.code}")

    assert (response.status_code, response["Retry-After"]) == (503, "1")
    assert response.json() == {
        "error": {"code": "unavailable", "message": "The service is temporarily unavailable; retry shortly."}
    }
    assert failing.called
    # An outage, not a bug: a warning without a traceback.
    assert [
        (r.levelname, r.getMessage(), r.exc_info) for r in caplog.records if r.name == "quiz.api.views"
    ] == [("WARNING", "redis unavailable: No master found for 'main'", None)]


async def test_a_finished_game_is_not_joinable(game: Game) -> None:
    await sync_to_async(services.game_finish)(game=game)
    response = await join(AsyncClient(), game.code, "late")
    assert (response.status_code, response.json()["error"]["code"]) == (409, "game_not_joinable")


async def test_joins_beyond_the_rate_get_429_with_retry_after_and_are_not_stored(game: Game) -> None:
    with override_settings(QUIZ={**QUIZ, "JOIN_RATE": "3/m", "JOIN_RATE_PER_CLIENT": "100/m"}):
        statuses = [(await join(AsyncClient(), game.code, f"p{i}")).status_code for i in range(5)]
        refused = await join(AsyncClient(), game.code, "one-more")
    assert statuses == [201, 201, 201, 429, 429]
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert refused.json() == {
        "error": {
            "code": "throttled",
            "message": "Too many joins right now; retry after the indicated delay.",
        }
    }
    assert await Player.objects.filter(game=game).acount() == 3


async def test_one_client_is_limited_before_the_global_rate(game: Game) -> None:
    with override_settings(QUIZ={**QUIZ, "JOIN_RATE": "100/m", "JOIN_RATE_PER_CLIENT": "2/m"}):
        same_ip = [(await join(AsyncClient(), game.code, f"p{i}")).status_code for i in range(3)]
        other_ip = await sync_to_async(
            lambda: Client(REMOTE_ADDR="10.1.2.3").post(
                f"/api/quiz/games/{game.code}/join",
                {"nickname": "elsewhere"},
                content_type="application/json",
            )
        )()
    assert same_ip == [201, 201, 429]
    assert other_ip.status_code == 201


async def _joined(game: Game, nickname: str = "ada") -> dict[str, Any]:
    response = await join(AsyncClient(), game.code, nickname)
    assert response.status_code == 201
    return response.json()


async def answer(code: str, token: str | None, question_id: Any, choice: Any) -> Any:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    return await AsyncClient().post(
        f"/api/quiz/games/{code}/answers",
        {"question_id": question_id, "choice": choice},
        content_type="application/json",
        headers=headers,
    )


async def test_answers_are_202_once_stored_and_refused_clearly_otherwise(game: Game, external_worker) -> None:
    ada = await _joined(game)
    early = await answer(game.code, ada["token"], 1, 0)
    assert (early.status_code, early.json()["error"]["code"]) == (409, "not_answerable")
    game = await sync_to_async(services.game_start)(game=game)
    question_id = game.current_question_id
    accepted = await answer(game.code, ada["token"], question_id, 1)
    assert accepted.status_code == 202
    assert accepted.json() == {"answer_id": accepted.json()["answer_id"], "status": "accepted"}
    again = await answer(game.code, ada["token"], question_id, 0)
    assert (again.status_code, again.json()["error"]["code"]) == (409, "already_answered")
    wrong_question = await answer(game.code, ada["token"], question_id + 1, 0)
    assert wrong_question.json()["error"]["code"] == "not_answerable"
    bad_choice = await answer(game.code, (await _joined(game, "bob"))["token"], question_id, 2 + 9)
    assert bad_choice.status_code == 400
    no_token = await answer(game.code, None, question_id, 0)
    assert (no_token.status_code, no_token.json()["error"]["code"]) == (401, "invalid_player_token")
    forged = await answer(game.code, "forged", question_id, 0)
    assert forged.status_code == 401
    stored = await sync_to_async(lambda: list(Answer.objects.values_list("choice", "scored_at")))()
    assert stored == [(1, None)]


async def test_the_state_endpoint_hides_the_answer_until_the_reveal(game: Game) -> None:
    client = AsyncClient()
    with override_settings(QUIZ=QUIZ):
        lobby = await client.get(f"/api/quiz/games/{game.code}")
        assert lobby.status_code == 200 and lobby["Cache-Control"] == "public, max-age=1"
        assert {k: v for k, v in lobby.json().items() if k != "server_time"} == {
            "type": "state",
            "code": game.code,
            "title": "Test set",
            "state": "lobby",
        }
        game = await sync_to_async(services.game_start)(game=game)
        asking = (await client.get(f"/api/quiz/games/{game.code}")).json()
        assert asking["state"] == "question" and "correct_choice" not in asking
        assert asking["question"]["text"] == "2 + 2?" and "correct_choice" not in asking["question"]
        await sync_to_async(services.game_reveal)(game=game)
        revealed = (await client.get(f"/api/quiz/games/{game.code}")).json()
        assert (revealed["state"], revealed["correct_choice"], revealed["counts"]) == ("reveal", 1, [0, 0, 0])
    assert (await client.get("/api/quiz/games/NOPE99")).status_code == 404


async def test_me_returns_the_players_own_standing(game: Game) -> None:
    ada = await _joined(game)
    response = await AsyncClient().get(
        f"/api/quiz/games/{game.code}/me", headers={"authorization": f"Bearer {ada['token']}"}
    )
    assert response.status_code == 200
    assert response.json() == {
        "player_id": ada["player_id"],
        "nickname": "ada",
        "score": 0,
        "rank": 1,
        "players": 1,
        "rejoin_code": ada["rejoin_code"],
        "answers": [],
    }
    assert (await AsyncClient().get(f"/api/quiz/games/{game.code}/me")).status_code == 401


async def test_host_controls_need_staff_and_follow_the_state_machine(game: Game, host) -> None:
    anonymous = await AsyncClient().post(f"/api/quiz/games/{game.code}/start")
    assert anonymous.status_code == 403
    client = AsyncClient()
    await client.aforce_login(host)
    reveal_first = await client.post(f"/api/quiz/games/{game.code}/reveal")
    assert (reveal_first.status_code, reveal_first.json()["error"]["code"]) == (409, "invalid_transition")
    started = await client.post(f"/api/quiz/games/{game.code}/start")
    assert started.json() == {"code": game.code, "state": "question", "question_index": 0}
    unknown = await client.post(f"/api/quiz/games/{game.code}/explode")
    assert unknown.status_code == 400


async def test_host_controls_need_the_csrf_token_of_the_staff_session(game: Game, host) -> None:
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(host)
    await client.get(f"/quiz/{game.code}/host/")  # the console page sets the csrftoken cookie
    url = f"/api/quiz/games/{game.code}/start"

    refused = await client.post(url)
    accepted = await client.post(url, headers={"x-csrftoken": client.cookies["csrftoken"].value})

    assert (refused.status_code, refused.json()) == (
        403,
        {"error": {"code": "forbidden", "message": "CSRF check failed: CSRF token missing."}},
    )
    assert (accepted.status_code, accepted.json()) == (
        200,
        {"code": game.code, "state": "question", "question_index": 0},
    )


async def test_the_state_answers_head_like_get_without_a_body(game: Game) -> None:
    response = await AsyncClient().head(f"/api/quiz/games/{game.code}")

    assert (response.status_code, response["Content-Type"], response.content) == (
        200,
        "application/json",
        b"",
    )


# -- rejoin -------------------------------------------------------------------------


async def rejoin(code: str, nickname: str, rejoin_code: str) -> Any:
    return await AsyncClient().post(
        f"/api/quiz/games/{code}/rejoin",
        {"nickname": nickname, "rejoin_code": rejoin_code},
        content_type="application/json",
    )


async def test_nobody_takes_over_a_nickname_without_its_code(game: Game) -> None:
    ada = (await join(AsyncClient(), game.code, "Ada")).json()
    grace = (await join(AsyncClient(), game.code, "Grace")).json()
    assert ada["rejoin_code"] != grace["rejoin_code"]
    # Another player's code, a made-up one and an unknown nickname: refused alike.
    for nickname, code in (("Ada", grace["rejoin_code"]), ("Ada", "ZZZZZZ"), ("Nobody", ada["rejoin_code"])):
        refused = await rejoin(game.code, nickname, code)
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "rejoin_refused")
    # The code is for this game only.
    other = await sync_to_async(
        lambda: services.game_open(game=services.game_create(host=game.host, question_set=game.question_set))
    )()
    assert (await rejoin(other.code, "Ada", ada["rejoin_code"])).status_code == 403
    assert (await rejoin("NOPE99", "Ada", ada["rejoin_code"])).status_code == 404
    missing = await AsyncClient().post(
        f"/api/quiz/games/{game.code}/rejoin", {"nickname": "Ada"}, content_type="application/json"
    )
    assert missing.json() == {
        "error": {
            "code": "bad_request",
            "message": "rejoin_code: The code the player's page showed is required.",
        }
    }
    # Ada is still Ada, on her first device.
    player = await Player.objects.aget(pk=ada["player_id"])
    assert player.token_hash == services.token_hash(ada["token"])


async def test_a_rejoin_keeps_the_player_and_retires_the_old_token_and_code(game: Game) -> None:
    ada = (await join(AsyncClient(), game.code, "Ada")).json()
    back = await rejoin(game.code, " Ada ", f" {ada['rejoin_code'].lower()} ")
    assert back.status_code == 200
    body = back.json()
    assert (body["player_id"], body["nickname"], body["channels"]) == (
        ada["player_id"],
        "Ada",
        ada["channels"],
    )
    assert body["token"] != ada["token"] and body["rejoin_code"] != ada["rejoin_code"]
    # The old code is spent: it cannot bring anyone back a second time.
    assert (await rejoin(game.code, "Ada", ada["rejoin_code"])).status_code == 403
    assert (await rejoin(game.code, "Ada", body["rejoin_code"])).status_code == 200


async def test_wrong_codes_for_a_nickname_are_limited(game: Game) -> None:
    from quiz.services.players import REJOIN_MAX_FAILURES, REJOIN_WINDOW

    ada = (await join(AsyncClient(), game.code, "Ada")).json()
    for _ in range(REJOIN_MAX_FAILURES):
        assert (await rejoin(game.code, "Ada", "WRONG2")).status_code == 403
    # Even the right code waits now: guessing cannot go on, and the answer says for how long.
    limited = await rejoin(game.code, "Ada", ada["rejoin_code"])
    assert (limited.status_code, limited["Retry-After"], limited.json()["error"]["code"]) == (
        429,
        str(REJOIN_WINDOW),
        "throttled",
    )
    # Other nicknames are not held up.
    grace = (await join(AsyncClient(), game.code, "Grace")).json()
    assert (await rejoin(game.code, "Grace", grace["rejoin_code"])).status_code == 200
