"""The one module that listens to quiz signals and publishes through ``realtime`` (STYLE habit 12)."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

import realtime

from . import channels, signals, worker


@receiver(signals.answer_scored, dispatch_uid="quiz.publish_score")
async def publish_score(sender: Any, result: worker.ScoredAnswer, **kwargs: Any) -> None:
    """Each player hears their own score, delta and rank on their private channel."""
    await realtime.apublish(
        channels.player_channel(result.game_code, result.player_id),
        [
            {
                "type": "score",
                "question_id": result.question_id,
                "correct": result.correct,
                "delta": result.delta,
                "score": result.score,
                "rank": result.rank,
                "players": result.players,
            }
        ],
    )


@receiver(signals.answer_received, dispatch_uid="quiz.wake_worker")
def wake_worker(sender: Any, **kwargs: Any) -> None:
    """An in-process worker scores new answers at once instead of at its next poll."""
    worker.wake()
