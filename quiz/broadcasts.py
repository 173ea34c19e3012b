"""What the game announces, and the one module of ``quiz`` that publishes through ``realtime``.

Every function here is called inside the transaction that makes the change it
announces, and hands the events to ``realtime.publish_on_commit``: they are
published after the commit (never for a rollback, at least once after a crash)
by the relay, in order per channel. Each publication has a key of its own, so a
retried write is not published twice, and each event carries the key as its
``identifier`` for clients to drop a repeat.

Keys: ``quiz.<game id>.state.<state>``, ``quiz.<game id>.question.<index>``,
``quiz.<game id>.reveal.<index>``, ``quiz.<game id>.next_game`` (a game passes each of these once),
``quiz.<game id>.<leaderboard|progress>.<n>`` (the feed's n-th broadcast) and
``quiz.score.<answer id>`` (an answer is scored once).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import realtime

from . import channels, payloads
from .models import Feed, Game, Player, Question

logger = logging.getLogger(__name__)

# What a removed player's client hears before its socket closes.
REMOVED = "Removed from the game by the host"
# What the old device of a player who rejoined elsewhere hears before its socket closes.
REJOINED = "Rejoined on another device"


def game_state(game: Game) -> None:
    """The game opened its lobby or finished: everyone in it hears the new state."""
    realtime.publish_on_commit(
        channels.game_channel(game.code),
        [payloads.game_state(game)],
        key=f"quiz.{game.pk}.state.{game.state}",
    )


def question_opened(game: Game, question: Question, index: int, total: int) -> None:
    """A question is open: everyone hears it, without its answer."""
    realtime.publish_on_commit(
        channels.game_channel(game.code),
        [payloads.question_opened(game, question, index, total)],
        key=f"quiz.{game.pk}.question.{index}",
    )


def question_revealed(game: Game, question: Question, counts: list[int]) -> None:
    """The question closed: everyone hears the right answer and the answer counts."""
    realtime.publish_on_commit(
        channels.game_channel(game.code),
        [payloads.question_revealed(game, question, counts)],
        key=f"quiz.{game.pk}.reveal.{game.question_index}",
    )


def next_game(game: Game, rematch: Game) -> None:
    """The host started a rematch: the finished game's players are invited to it."""
    realtime.publish_on_commit(
        channels.game_channel(game.code),
        [payloads.next_game(game, rematch)],
        key=f"quiz.{game.pk}.next_game",
    )


def scores(scored: Iterable[payloads.Score]) -> None:
    """Each player hears their own score, on their private channel, once per answer."""
    realtime.publish_many_on_commit(
        (
            channels.player_channel(score.game_code, score.player_id),
            [score.event()],
            f"quiz.score.{score.answer_id}",
        )
        for score in scored
    )


FEED_CHANNELS = {
    Feed.Kind.LEADERBOARD: channels.leaderboard_channel,
    Feed.Kind.PROGRESS: channels.host_channel,
}


def feed(game: Game, kind: str, number: int, payload: dict[str, Any]) -> None:
    """A feed's ``number``-th broadcast: the leaderboard to everyone, the progress to staff."""
    realtime.publish_on_commit(
        FEED_CHANNELS[Feed.Kind(kind)](game.code), [payload], key=f"quiz.{game.pk}.{kind}.{number}"
    )


def player_removed(player: Player) -> None:
    """The host removed a player: once that commits, their sockets close in every process.

    Their token was replaced in the same transaction; each process also forgets
    the tokens it cached (quiz.receivers), so the old one authorizes nothing.
    """
    _close_on_commit({"player_id": player.pk}, REMOVED)


def player_rejoined(player: Player, old_device: str) -> None:
    """The player rejoined on another device: once that commits, the old device's sockets close
    in every process (the sockets of the new token, whatever their timing, stay).

    ``old_device``: :func:`quiz.models.device_for` of the token the rejoin retired.
    """
    _close_on_commit({"player_id": player.pk, "device": old_device}, REJOINED)


def _close_on_commit(handler_context: dict[str, Any], reason: str) -> None:
    # The one way the quiz closes players' sockets: realtime's server-side control, which
    # reaches every process and makes each forget its cached tokens (quiz.receivers).
    from django.db import transaction

    def close_sockets() -> None:
        try:
            realtime.disconnect(identity={"handlerContext": handler_context}, reason=reason)
        except Exception as exc:
            # Committed already: the token is dead, only open sockets stay until they next act.
            logger.warning("could not close the sockets of player %s: %s", handler_context["player_id"], exc)

    transaction.on_commit(close_sockets)
