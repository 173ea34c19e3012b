"""Who is online, and removing a player: their socket closes, their token and answers are refused."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from quiz.broadcasts import REMOVED
from quiz.models import Game

from .test_game import join

pytestmark = pytest.mark.django_db(transaction=True)


async def answer(game: Game, token: str) -> Any:
    return await AsyncClient().post(
        f"/api/quiz/games/{game.code}/answers",
        {"question_id": game.current_question_id, "choice": 0},
        content_type="application/json",
        headers={"authorization": f"Bearer {token}"},
    )


async def test_a_removed_player_is_closed_out_and_their_token_refused(game: Game, host, ws_player) -> None:
    ada = await join(AsyncClient(), game.code, "ada")
    bob = await join(AsyncClient(), game.code, "bob")
    ada_socket = await ws_player(ada["token"])
    bob_socket = await ws_player(bob["token"])
    for socket in (ada_socket, bob_socket):
        assert (await socket.subscribe("g", f"/quiz/{game.code}/game"))["type"] == "subscribe_success"
    host_client = AsyncClient()
    await host_client.aforce_login(host)

    response = await host_client.post(f"/api/quiz/games/{game.code}/players/{ada['player_id']}/remove")

    assert (response.status_code, response.json()) == (
        200,
        {"player_id": ada["player_id"], "nickname": "ada"},
    )
    closing = await ada_socket.expect(lambda frame: frame.get("type") == "error")
    assert closing == {
        "type": "error",
        "errors": [{"errorType": "UnauthorizedException", "message": REMOVED}],
    }
    close = await ada_socket.comm.receive_output(1)
    assert (close["type"], close["code"]) == ("websocket.close", 4401)
    # Bob plays on.
    await bob_socket.assert_silent(0.2)

    from quiz import services

    game = await sync_to_async(services.game_start)(game=game)
    refused = await answer(game, ada["token"])
    accepted = await answer(game, bob["token"])
    assert (refused.status_code, accepted.status_code) == (401, 202), refused.content
    # The old token opens no socket either.
    again = await ws_player(ada["token"])
    await again.send({"type": "connection_init"})
    refusal = await again.expect(lambda frame: frame.get("type") == "connection_error")
    assert refusal["errors"][0]["errorType"] == "UnauthorizedException"


async def test_only_the_host_removes_players_and_only_players_of_the_game(game: Game, host) -> None:
    ada = await join(AsyncClient(), game.code, "ada")
    host_client = AsyncClient()
    await host_client.aforce_login(host)

    anonymous = await AsyncClient().post(f"/api/quiz/games/{game.code}/players/{ada['player_id']}/remove")
    unknown = await host_client.post(f"/api/quiz/games/{game.code}/players/999999/remove")

    assert anonymous.status_code == 403, anonymous.content
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "player_not_found")


async def test_the_host_sees_who_is_online_on_the_game_presence_channel(game: Game, host, ws_player) -> None:
    from realtime.models import Namespace

    await Namespace.objects.filter(name="quiz").aupdate(presence=True)
    ada = await join(AsyncClient(), game.code, "ada")
    await join(AsyncClient(), game.code, "bob")  # joined, never connected
    staff = await ws_player(staff=host)
    assert (await staff.subscribe("p", f"/$presence/quiz/{game.code}/game"))["type"] == "subscribe_success"
    first = await staff.event_on("p", "occupancy")
    assert first["members"] == []

    ada_socket = await ws_player(ada["token"])
    await ada_socket.subscribe("g", f"/quiz/{game.code}/game")
    update = await staff.event_on("p", "occupancy")

    (member,) = update["members"]
    assert {key: member[key] for key in ("player", "nickname")} == {
        "player": ada["player_id"],
        "nickname": "ada",
    }
    assert update["joined"] == [member] and update["left"] == []


async def test_a_rejoin_closes_the_old_devices_socket_and_only_that_one(game: Game, ws_player) -> None:
    from quiz import services
    from quiz.broadcasts import REJOINED

    ada = await join(AsyncClient(), game.code, "ada")
    bob = await join(AsyncClient(), game.code, "bob")
    old_device = await ws_player(ada["token"])
    bob_socket = await ws_player(bob["token"])
    for socket in (old_device, bob_socket):
        assert (await socket.subscribe("g", f"/quiz/{game.code}/game"))["type"] == "subscribe_success"

    response = await AsyncClient().post(
        f"/api/quiz/games/{game.code}/rejoin",
        {"nickname": "ada", "rejoin_code": ada["rejoin_code"]},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    back = response.json()

    # The same path as a removal (realtime.disconnect), with the rejoin's own reason.
    closing = await old_device.expect(lambda frame: frame.get("type") == "error")
    assert closing == {
        "type": "error",
        "errors": [{"errorType": "UnauthorizedException", "message": REJOINED}],
    }
    close = await old_device.comm.receive_output(1)
    assert (close["type"], close["code"], close["reason"]) == ("websocket.close", 4401, REJOINED)
    # The new device connects, and is not closed by the old device's ending; Bob plays on.
    new_device = await ws_player(back["token"])
    assert (await new_device.subscribe("g", f"/quiz/{game.code}/game"))["type"] == "subscribe_success"
    await bob_socket.assert_silent(0.2)
    await new_device.assert_silent(0.2)

    game = await sync_to_async(services.game_start)(game=game)
    refused, accepted = await answer(game, ada["token"]), await answer(game, back["token"])
    assert (refused.status_code, accepted.status_code) == (401, 202), refused.content
    # The old token opens no socket either.
    again = await ws_player(ada["token"])
    await again.send({"type": "connection_init"})
    refusal = await again.expect(lambda frame: frame.get("type") == "connection_error")
    assert refusal["errors"][0]["errorType"] == "UnauthorizedException"
