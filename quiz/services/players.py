"""Writes of players: joining a game, alone or many in one transaction; rejoining on another device.

A join changes the game's player count: its leaderboard and host progress
feeds are marked stale in the same transaction (quiz.coalescer).
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction
from django.utils.crypto import constant_time_compare

from ..batching import GroupCommit
from ..exceptions import (
    GameNotFound,
    GameNotJoinable,
    InvalidNickname,
    NicknameTaken,
    RejoinRefused,
    TooManyRejoins,
)
from ..models import Game, GameState, Player, nickname_clean, rejoin_code_for, token_hash
from .feeds import feeds_mark_stale
from .rows import insert_each_once

JOINABLE = (GameState.LOBBY, GameState.QUESTION, GameState.REVEAL)


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
        for index, _player in insert_each_once([(index, player) for index, player, _ in stored]):
            results[index] = NicknameTaken()  # taken by another process since the check above
        feeds_mark_stale(game_ids={player.game_id for index, player, _ in stored if results[index] is None})
    for index, player, token in stored:
        if results[index] is None:
            results[index] = (player, token)
    return [result for result in results if result is not None]


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


# Wrong rejoin codes a nickname takes in REJOIN_WINDOW seconds before rejoins under it wait.
REJOIN_MAX_FAILURES = 10
REJOIN_WINDOW = 600


def player_rejoin(*, code: str, nickname: str, rejoin_code: str) -> tuple[Player, str]:
    """The player of game ``code`` named ``nickname`` comes back, on another device, with the
    rejoin code their page showed (:func:`quiz.models.rejoin_code_for`).

    Their score and answers stay theirs; they get a new token, so the old code and
    the old token stop working (the old device's page is told it lost its place).
    Nobody takes over a nickname without its code: a wrong code is refused the same
    way as an unknown nickname, and after ``REJOIN_MAX_FAILURES`` wrong codes in
    ``REJOIN_WINDOW`` seconds the nickname's rejoins wait for the window to end.

    Returns:
        The player (committed) and the new token.

    Raises:
        GameNotFound, InvalidNickname, RejoinRefused, TooManyRejoins.
    """
    nickname = nickname_clean(nickname)
    typed = rejoin_code.strip().upper() if isinstance(rejoin_code, str) else ""
    game = Game.objects.filter(code=code).only("pk").first()
    if game is None:
        raise GameNotFound()
    failures_key = f"quiz:rejoin-failures:{game.pk}:{hashlib.sha256(nickname.encode()).hexdigest()}"
    if (cache.get(failures_key) or 0) >= REJOIN_MAX_FAILURES:
        raise TooManyRejoins(retry_after=REJOIN_WINDOW)
    with transaction.atomic():
        player = Player.objects.select_for_update().filter(game=game, nickname=nickname).first()
        if player is None or not constant_time_compare(typed, rejoin_code_for(player.token_hash)):
            cache.add(failures_key, 0, REJOIN_WINDOW)
            try:
                cache.incr(failures_key)
            except ValueError:  # expired between the two calls
                cache.set(failures_key, 1, REJOIN_WINDOW)
            raise RejoinRefused()
        token = secrets.token_urlsafe(24)
        player.token_hash = token_hash(token)
        player.save(update_fields=["token_hash"])
    return player, token
