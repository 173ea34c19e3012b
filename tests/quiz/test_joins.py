"""Idempotent joins: the same Idempotency-Key gets the same 201 body, even when the first answer was lost."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.test import AsyncClient

from quiz import services
from quiz.models import Game, Player

pytestmark = pytest.mark.django_db(transaction=True)

REUSED = {
    "error": {
        "code": "idempotency_key_reused",
        "message": "This Idempotency-Key was used for a join with another nickname; use a new key.",
    }
}


async def join(code: str, nickname: str, key: str | None) -> Any:
    headers = {"idempotency-key": key} if key is not None else {}
    return await AsyncClient().post(
        f"/api/quiz/games/{code}/join",
        {"nickname": nickname},
        content_type="application/json",
        headers=headers,
    )


def new_key() -> str:
    return f'"{uuid.uuid4()}"'


async def test_a_retry_with_the_same_key_gets_the_same_201_body_and_stores_one_player(game: Game) -> None:
    key = new_key()
    first = await join(game.code, "ada", key)
    again = await join(game.code, " ada ", key)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    player = await Player.objects.aget(game=game)
    assert player.pk == first.json()["player_id"]
    assert player.token_hash == services.token_hash(first.json()["token"])
    assert key.strip('"') not in player.join_key  # stored hashed


async def test_the_same_key_with_another_nickname_is_422_and_stores_nothing_more(game: Game) -> None:
    key = new_key()
    assert (await join(game.code, "ada", key)).status_code == 201
    other = await join(game.code, "bob", key)

    assert (other.status_code, other.json()) == (422, REUSED)
    assert await Player.objects.filter(game=game).acount() == 1


async def test_a_nickname_taken_by_another_key_or_by_no_key_stays_409(game: Game) -> None:
    assert (await join(game.code, "ada", new_key())).status_code == 201
    by_other_key = await join(game.code, "ada", new_key())
    without_key = await join(game.code, "ada", None)

    assert (by_other_key.status_code, by_other_key.json()["error"]["code"]) == (409, "nickname_taken")
    assert (without_key.status_code, without_key.json()["error"]["code"]) == (409, "nickname_taken")


async def test_a_stored_join_is_replayed_for_the_games_lifetime_even_once_it_is_finished(game: Game) -> None:
    key = new_key()
    first = await join(game.code, "ada", key)
    await sync_to_async(services.game_finish)(game=game)

    again = await join(game.code, "ada", key)
    late = await join(game.code, "bob", new_key())

    assert (again.status_code, again.json()) == (201, first.json())
    assert (late.status_code, late.json()["error"]["code"]) == (409, "game_not_joinable")


async def test_the_same_key_in_two_games_is_two_players_with_different_tokens(game: Game, host) -> None:
    def second_game() -> Game:
        return services.game_open(game=services.game_create(host=host, question_set=game.question_set))

    other = await sync_to_async(second_game)()
    key = new_key()
    here = (await join(game.code, "ada", key)).json()
    there = (await join(other.code, "ada", key)).json()

    assert here["player_id"] != there["player_id"] and here["token"] != there["token"]


async def test_requests_with_one_key_that_arrive_together_share_one_player(game: Game) -> None:
    key = new_key()
    responses = await asyncio.gather(*(join(game.code, "ada", key) for _ in range(4)))
    mismatch = await join(game.code, "eve", key)

    assert [response.status_code for response in responses] == [201] * 4
    assert len({response.content for response in responses}) == 1
    assert await Player.objects.filter(game=game).acount() == 1
    assert mismatch.status_code == 422


def test_a_batch_answers_a_repeated_key_like_the_first_and_a_changed_body_with_the_error(game: Game) -> None:
    key = str(uuid.uuid4())
    first, repeat, changed = services.players_join(
        requests=[
            services.JoinRequest(code=game.code, nickname="ada", key=key),
            services.JoinRequest(code=game.code, nickname="ada", key=key),
            services.JoinRequest(code=game.code, nickname="eve", key=key),
        ]
    )
    assert repeat == first
    assert type(changed).__name__ == "IdempotencyKeyReused"
    assert Player.objects.filter(game=game).count() == 1


@pytest.mark.parametrize("key", ["short", "x" * 256, "naïve-key-of-enough-length", '"' + "a" * 10 + '"'])
async def test_a_malformed_key_is_400_and_stores_nothing(game: Game, key: str) -> None:
    response = await join(game.code, "ada", key)

    assert (response.status_code, response.json()) == (
        400,
        {
            "error": {
                "code": "bad_request",
                "message": "Idempotency-Key: 16 to 255 printable ASCII characters (a UUID, say).",
            }
        },
    )
    assert await Player.objects.acount() == 0


async def test_a_join_whose_commit_answer_is_lost_is_503_and_its_retry_gets_the_player(game: Game) -> None:
    """The database commits, then the connection fails before its answer arrives (a proxy cut)."""
    commit = BaseDatabaseWrapper._commit

    def commit_then_cut(self: BaseDatabaseWrapper) -> None:
        commit(self)
        raise OperationalError("server closed the connection unexpectedly")

    key = new_key()
    with mock.patch.object(BaseDatabaseWrapper, "_commit", commit_then_cut):
        lost = await join(game.code, "ada", key)
    retry = await join(game.code, "ada", key)

    assert (lost.status_code, lost["Retry-After"]) == (503, "2")
    assert retry.status_code == 201
    player = await Player.objects.aget(game=game)
    assert (retry.json()["player_id"], retry.json()["nickname"]) == (player.pk, "ada")
    assert player.token_hash == services.token_hash(retry.json()["token"])


async def test_a_replay_after_the_player_rejoined_elsewhere_is_409_not_the_retired_token(game: Game) -> None:
    key = new_key()
    first = (await join(game.code, "ada", key)).json()
    await sync_to_async(services.player_rejoin)(
        code=game.code, nickname="ada", rejoin_code=first["rejoin_code"]
    )

    replay = await join(game.code, "ada", key)

    assert (replay.status_code, replay.json()["error"]["code"]) == (409, "nickname_taken")
