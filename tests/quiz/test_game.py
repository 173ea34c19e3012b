"""A whole game over the real protocol: joins, live questions, answers, scores, leaderboard."""

from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from quiz.models import Answer, Game, Player

from .conftest import WsPlayer

pytestmark = pytest.mark.django_db(transaction=True)


async def join(client: AsyncClient, code: str, nickname: str) -> dict[str, Any]:
    response = await client.post(
        f"/api/quiz/games/{code}/join", {"nickname": nickname}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    return response.json()


async def host_action(host_client: AsyncClient, code: str, action: str) -> dict[str, Any]:
    response = await host_client.post(f"/api/quiz/games/{code}/{action}")
    assert response.status_code == 200, response.content
    return response.json()


async def test_a_whole_game_with_several_players(game: Game, host, ws_player) -> None:
    client = AsyncClient()
    host_client = AsyncClient()
    await host_client.aforce_login(host)
    code = game.code

    joined = [await join(client, code, name) for name in ("ada", "bob", "cy")]
    assert joined[0]["channels"] == {
        "game": f"/quiz/{code}/game",
        "leaderboard": f"/quiz/{code}/leaderboard",
        "player": f"/quiz/{code}/players/{joined[0]['player_id']}",
        "answers": f"/quiz/{code}/answers",
    }
    players: list[WsPlayer] = []
    for info in joined:
        player = await ws_player(info["token"])
        for sub_id, channel in (("g", "game"), ("l", "leaderboard"), ("me", "player")):
            reply = await player.subscribe(sub_id, info["channels"][channel])
            # The game's channels keep history: the reply names the stream's position (PROTOCOL §12).
            assert reply == {
                "type": "subscribe_success",
                "id": sub_id,
                "offset": reply["offset"],
                "epoch": reply["epoch"],
            }
        players.append(player)

    # Start: everyone hears the first question, without its answer.
    await host_action(host_client, code, "start")
    questions = [await player.event_on("g", "question") for player in players]
    question = questions[0]["question"]
    assert all(q["question"] == question for q in questions)
    assert question == {
        "id": question["id"],
        "index": 0,
        "total": 2,
        "text": "2 + 2?",
        "choices": ["3", "4", "5"],
        "time_limit": 30.0,
        "points": 1000,
    }

    # ada answers over WebSocket, bob over HTTP (right), cy wrongly over HTTP.
    ada, bob, cy = players
    await ada.send(
        {
            "type": "publish",
            "id": "a1",
            "channel": joined[0]["channels"]["answers"],
            "events": [json.dumps({"question_id": question["id"], "choice": 1})],
        }
    )
    ack = await ada.expect(lambda f: f.get("id") == "a1")
    assert ack["type"] == "publish_success" and ack["failed"] == [] and len(ack["successful"]) == 1
    for info, choice in ((joined[1], 1), (joined[2], 0)):
        response = await client.post(
            f"/api/quiz/games/{code}/answers",
            {"question_id": question["id"], "choice": choice},
            content_type="application/json",
            headers={"authorization": f"Bearer {info['token']}"},
        )
        assert response.status_code == 202, response.content

    # Each player hears their own score on their private channel.
    ada_score = await ada.event_on("me", "score")
    bob_score = await bob.event_on("me", "score")
    cy_score = await cy.event_on("me", "score")
    assert ada_score["correct"] and bob_score["correct"] and not cy_score["correct"]
    assert 500 <= ada_score["delta"] <= 1000 and 500 <= bob_score["delta"] <= 1000
    cy_answer = await Answer.objects.aget(player_id=joined[2]["player_id"])
    assert cy_score == {
        "type": "score",
        "question_id": question["id"],
        "correct": False,
        "delta": 0,
        "score": 0,
        "rank": 3,
        "players": 3,
        # One score per answer: a repeated delivery has the same identifier.
        "identifier": f"quiz.score.{cy_answer.pk}",
    }
    assert {ada_score["rank"], bob_score["rank"]} <= {1, 2}

    # Reveal: the right answer and the counts.
    await host_action(host_client, code, "reveal")
    reveal = await cy.event_on("g", "reveal")
    assert reveal == {
        "type": "reveal",
        "code": code,
        "state": "reveal",
        "question_id": question["id"],
        "correct_choice": 1,
        "counts": [1, 2, 0],
        "identifier": f"quiz.{game.pk}.reveal.0",
    }

    # Second question, then finish: the final leaderboard matches the database.
    await host_action(host_client, code, "next")
    second = (await bob.event_on("g", "question"))["question"]
    assert second["index"] == 1 and "correct_choice" not in second
    await host_action(host_client, code, "finish")
    assert (await ada.event_on("g", "state"))["state"] == "finished"

    def final(board: dict[str, Any]) -> bool:
        return board["type"] == "leaderboard" and board["final"]

    board = None
    while board is None or not final(board):
        board = await cy.event_on("l", "leaderboard")
    expected = await sync_to_async(
        lambda: [(p.nickname, p.score) for p in Player.objects.filter(game=game).order_by("-score", "pk")]
    )()
    assert [(row["nickname"], row["score"]) for row in board["top"]] == expected
    assert board["players"] == 3
    assert await Answer.objects.filter(scored_at=None).acount() == 0


async def test_a_player_cannot_read_another_players_channel_or_publish_game_control(
    game: Game, ws_player
) -> None:
    client = AsyncClient()
    ada = await join(client, game.code, "ada")
    bob = await join(client, game.code, "bob")
    socket = await ws_player(ada["token"])
    frame = await socket.subscribe("spy", bob["channels"]["player"])
    assert frame == {
        "type": "subscribe_error",
        "id": "spy",
        "errors": [
            {
                "errorType": "BadRequestException",
                "message": "Players may subscribe only to their game, its leaderboard and their own channel.",
            }
        ],
    }
    frame = await socket.subscribe("wild", f"/quiz/{game.code}/*")
    assert frame["type"] == "subscribe_error"
    await socket.send(
        {"type": "publish", "id": "p", "channel": ada["channels"]["game"], "events": ['{"type":"question"}']}
    )
    refused = await socket.expect(lambda f: f.get("id") == "p")
    assert refused == {
        "type": "publish_error",
        "id": "p",
        "errors": [
            {"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}
        ],
    }


async def test_a_player_of_one_game_cannot_subscribe_to_another_game(game: Game, host, ws_player) -> None:
    from quiz import services

    other = await sync_to_async(
        lambda: services.game_open(game=services.game_create(host=host, question_set=game.question_set))
    )()
    ada = await join(AsyncClient(), game.code, "ada")
    socket = await ws_player(ada["token"])
    frame = await socket.subscribe("x", f"/quiz/{other.code}/game")
    assert frame == {
        "type": "subscribe_error",
        "id": "x",
        "errors": [
            {"errorType": "UnauthorizedException", "message": "You are not authorized to make this call."}
        ],
    }


async def test_the_host_channel_carries_live_answer_counts_to_staff_only(game: Game, host, ws_player) -> None:
    from quiz import services
    from quiz.models import Feed

    ada = await join(AsyncClient(), game.code, "ada")
    socket = await ws_player(ada["token"])
    refused = await socket.subscribe("h", f"/quiz/{game.code}/host")
    assert refused["type"] == "subscribe_error"
    staff = await ws_player(staff=host)
    reply = await staff.subscribe("h", f"/quiz/{game.code}/host")
    assert reply == {
        "type": "subscribe_success",
        "id": "h",
        "offset": reply["offset"],
        "epoch": reply["epoch"],
    }

    game = await sync_to_async(services.game_start)(game=game)
    response = await AsyncClient().post(
        f"/api/quiz/games/{game.code}/answers",
        {"question_id": game.current_question_id, "choice": 0},
        content_type="application/json",
        headers={"authorization": f"Bearer {ada['token']}"},
    )
    assert response.status_code == 202

    progress = await staff.event_on("h", "progress")
    while progress["answered"] != 1:
        progress = await staff.event_on("h", "progress")
    sent = (await Feed.objects.aget(game=game, kind=Feed.Kind.PROGRESS)).sent
    assert progress == {
        "type": "progress",
        "code": game.code,
        "state": "question",
        "players": 1,
        "answered": 1,
        "question_id": game.current_question_id,
        "identifier": f"quiz.{game.pk}.progress.{sent}",
    }
    # Nothing changes any more: nothing more is sent.
    await staff.assert_silent(0.5)


async def test_a_phone_that_reconnects_gets_the_question_and_the_score_it_missed(
    game: Game, host, ws_player
) -> None:
    """PROTOCOL §12: the player page re-subscribes with ``since`` after its network came back."""
    host_client = AsyncClient()
    await host_client.aforce_login(host)
    code = game.code
    ada = await join(AsyncClient(), code, "ada")
    phone = await ws_player(ada["token"])
    positions = {}
    for sub_id, channel in (("g", "game"), ("me", "player")):
        reply = await phone.subscribe(sub_id, ada["channels"][channel])
        positions[sub_id] = {"offset": reply["offset"], "epoch": reply["epoch"]}
    await phone.comm.disconnect()

    # While the phone is away the question goes out, and its answer (sent before it lost the
    # network) is scored.
    watcher = await ws_player(staff=host)
    await watcher.subscribe("g", ada["channels"]["game"])
    await host_action(host_client, code, "start")
    question = (await watcher.event_on("g", "question"))["question"]
    response = await AsyncClient().post(
        f"/api/quiz/games/{code}/answers",
        {"question_id": question["id"], "choice": 1},
        content_type="application/json",
        headers={"authorization": f"Bearer {ada['token']}"},
    )
    assert response.status_code == 202, response.content

    phone = await ws_player(ada["token"])
    for sub_id, channel in (("g", "game"), ("me", "player")):
        await phone.send(
            {
                "type": "subscribe",
                "id": sub_id,
                "channel": ada["channels"][channel],
                "since": positions[sub_id],
            }
        )
        reply = await phone.expect(
            lambda f, sub_id=sub_id: f.get("id") == sub_id and f["type"] == "subscribe_success"
        )
        assert reply["recovered"] is True and reply["epoch"] == positions[sub_id]["epoch"]
    # The question was published before the phone came back: only the replay can bring it.
    assert (await phone.event_on("g", "question"))["question"] == question
    score = await phone.event_on("me", "score")
    assert score["question_id"] == question["id"] and score["correct"] is True and score["score"] > 0
    await phone.assert_silent(0.3)
