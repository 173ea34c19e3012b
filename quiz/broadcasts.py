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

from collections.abc import Iterable
from typing import Any

import realtime

from . import channels, payloads
from .models import Feed, Game, Question


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
