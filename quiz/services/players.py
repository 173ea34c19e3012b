"""Writes of players: joining a game, alone or many in one transaction; rejoining on another device.

A join changes the game's player count: its leaderboard and host progress
feeds are marked stale in the same transaction (quiz.coalescer).

A join may carry an idempotency key (the ``Idempotency-Key`` header). Its
SHA-256 is stored with the player, and the player's token is derived from the
key (an HMAC under ``SECRET_KEY``), so the table holds nothing a client could
use, and a retry with the same key gets the same 201 body, the same player and
token, for as long as the game exists: also when the first attempt committed
and its answer was lost on the way back. The same key with another nickname is
refused (:class:`~quiz.exceptions.IdempotencyKeyReused`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from django.core.cache import cache
from django.db import transaction
from django.utils.crypto import constant_time_compare, salted_hmac

from .. import broadcasts
from ..batching import GroupCommit
from ..exceptions import (
    GameNotFound,
    GameNotJoinable,
    IdempotencyKeyReused,
    InvalidNickname,
    NicknameTaken,
    PlayerNotFound,
    RejoinRefused,
    TooManyRejoins,
)
from ..models import Game, GameState, Player, device_for, nickname_clean, rejoin_code_for, token_hash
from .feeds import feeds_mark_stale
from .rows import insert_each_once

JOINABLE = (GameState.LOBBY, GameState.QUESTION, GameState.REVEAL)

Joined = tuple[Player, str]


@dataclass(frozen=True, slots=True)
class JoinRequest:
    code: str
    nickname: str
    # The client's idempotency key, as sent; None: a join that is not retried safely.
    key: str | None = None


def join_key_hash(key: str) -> str:
    """How a join's idempotency key is stored: its SHA-256."""
    return hashlib.sha256(key.encode()).hexdigest()


def join_key_token(game: Game, key: str) -> str:
    """The token of the player a keyed join creates: the same for every retry, secret to the server."""
    digest = salted_hmac("quiz.join", f"{game.pk}:{key}", algorithm="sha256").digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def _replay(player: Player, game: Game, request: JoinRequest, nickname: str) -> Joined | Exception:
    """The first answer to a keyed join, again; or the error for a key sent with another body."""
    assert request.key is not None
    token = join_key_token(game, request.key)
    if player.nickname != nickname:
        return IdempotencyKeyReused()
    if player.token_hash != token_hash(token):
        # The player rejoined on another device (player_rejoin retired this token),
        # or SECRET_KEY changed since: the first answer cannot be given again.
        return NicknameTaken()
    return player, token


def players_join(*, requests: Sequence[JoinRequest]) -> list[Joined | Exception]:
    """Add several players in one transaction (:func:`player_join` for each).

    Returns one entry per request, in order: ``(player, token)`` once committed,
    or the error :func:`player_join` would raise for it. A request whose key
    joined already (before, or earlier in this batch) gets that join's answer.
    Raises only when the transaction fails, and then stored none of them.
    """
    results: list[Joined | Exception | None] = [None] * len(requests)
    nicknames: list[str] = []
    for index, request in enumerate(requests):
        try:
            nicknames.append(nickname_clean(request.nickname))
        except InvalidNickname as error:
            results[index] = error
            nicknames.append("")  # a placeholder; the request is already answered
    keys = [join_key_hash(request.key) if request.key is not None else None for request in requests]
    stored: list[tuple[int, Player, str]] = []
    # Keyed requests that repeat an earlier request of this batch: index -> the first one's index.
    repeats: dict[int, int] = {}
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
        keyed = _players_by_key(list(games.values()), {key for key in keys if key is not None})
        first_of_key: dict[tuple[int, str], int] = {}
        for index, (request, nickname, key) in enumerate(zip(requests, nicknames, keys, strict=True)):
            if results[index] is not None:
                continue  # its nickname breaks the rule
            game = games.get(request.code)
            if game is None:
                results[index] = GameNotFound()
            elif key is not None and (game.pk, key) in keyed:
                # Before the state check: a join that succeeded stays a success.
                results[index] = _replay(keyed[game.pk, key], game, request, nickname)
            elif key is not None and (game.pk, key) in first_of_key:
                repeats[index] = first_of_key[game.pk, key]
            elif game.state not in JOINABLE:
                results[index] = GameNotJoinable()
            elif (game.pk, nickname) in taken:
                results[index] = NicknameTaken()
            else:
                taken.add((game.pk, nickname))
                if key is not None:
                    first_of_key[game.pk, key] = index
                token = (
                    secrets.token_urlsafe(24) if request.key is None else join_key_token(game, request.key)
                )
                player = Player(
                    game=game, nickname=nickname, token_hash=token_hash(token), join_key=key or ""
                )
                stored.append((index, player, token))
        for index, player in insert_each_once([(index, player) for index, player, _ in stored]):
            # Taken by another process since the check above: by the same key
            # (a retry that reached another process), or by another player.
            key = keys[index]
            earlier = _players_by_key([player.game], {key}).get((player.game_id, key)) if key else None
            if earlier is None:
                results[index] = NicknameTaken()
            else:
                results[index] = _replay(earlier, player.game, requests[index], nicknames[index])
        feeds_mark_stale(game_ids={player.game_id for index, player, _ in stored if results[index] is None})
    for index, player, token in stored:
        if results[index] is None:
            results[index] = (player, token)
    for index, first in repeats.items():
        results[index] = _repeat(results[first], nicknames[index])
    return [result for result in results if result is not None]


def _players_by_key(games: list[Game], keys: set[str]) -> dict[tuple[int, str], Player]:
    """The players of ``games`` who joined with one of ``keys`` (hashed), by game and key."""
    if not keys:
        return {}
    players = Player.objects.filter(game__in=games, join_key__in=keys)
    return {(player.game_id, player.join_key): player for player in players}


def _repeat(first: Joined | Exception | None, nickname: str) -> Joined | Exception:
    """The answer to a keyed request that repeats one earlier in its batch."""
    assert first is not None
    if isinstance(first, Exception):
        return first
    return first if first[0].nickname == nickname else IdempotencyKeyReused()


def player_join(*, code: str, nickname: str, key: str | None = None) -> Joined:
    """Add a player; returns the row (committed) and the player's secret token.

    With ``key``, a second call with the same key returns the first call's
    player and token.

    Raises:
        GameNotFound, GameNotJoinable, NicknameTaken, InvalidNickname, IdempotencyKeyReused.
    """
    (result,) = players_join(requests=[JoinRequest(code=code, nickname=nickname, key=key)])
    if isinstance(result, Exception):
        raise result
    return result


_joins: GroupCommit[JoinRequest, Joined] = GroupCommit(lambda requests: players_join(requests=requests))


async def aplayer_join(*, code: str, nickname: str, key: str | None = None) -> Joined:
    """:func:`player_join` from async code: joins arriving together share one transaction."""
    return await _joins.submit(JoinRequest(code=code, nickname=nickname, key=key))


# Wrong rejoin codes a nickname takes in REJOIN_WINDOW seconds before rejoins under it wait.
REJOIN_MAX_FAILURES = 10
REJOIN_WINDOW = 600


def player_rejoin(*, code: str, nickname: str, rejoin_code: str) -> tuple[Player, str]:
    """The player of game ``code`` named ``nickname`` comes back, on another device, with the
    rejoin code their page showed (:func:`quiz.models.rejoin_code_for`).

    Their score and answers stay theirs; they get a new token, so the old code and
    the old token stop working, and once this commits the old device's sockets close
    in every process with :data:`quiz.broadcasts.REJOINED` (its page is told it lost
    its place); the new device's stay.
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
        old_device = device_for(player.token_hash)
        token = secrets.token_urlsafe(24)
        player.token_hash = token_hash(token)
        player.save(update_fields=["token_hash"])
        broadcasts.player_rejoined(player, old_device)
    return player, token


def player_remove(*, game: Game, player_id: int) -> Player:
    """The host removes a player from the show.

    Their token stops working at once (it is replaced by one nobody holds), so
    they can neither reconnect nor answer; once this commits, their open sockets
    close in every server process (:func:`quiz.broadcasts.player_removed`). Their
    answers so far and their score stay.

    Raises:
        PlayerNotFound: the game has no player with this id.
    """
    with transaction.atomic():
        player = Player.objects.select_for_update().filter(game=game, pk=player_id).first()
        if player is None:
            raise PlayerNotFound()
        player.token_hash = token_hash(secrets.token_urlsafe(32))
        player.save(update_fields=["token_hash"])
        broadcasts.player_removed(player)
    return player
