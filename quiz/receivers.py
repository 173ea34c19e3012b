"""Receivers of the quiz's own signals (quiz.signals): wiring only, no domain rules."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from . import autopilot, signals, worker
from .coalescer import coalescer


@receiver(signals.answer_received, dispatch_uid="quiz.wake_worker")
def wake_worker(sender: Any, **kwargs: Any) -> None:
    """An in-process worker scores new answers at once instead of at its next poll."""
    worker.wake()


@receiver(signals.feeds_changed, dispatch_uid="quiz.wake_coalescer")
def wake_coalescer(sender: Any, *, game_ids: list[int], **kwargs: Any) -> None:
    """This process's coalescer broadcasts the games' stale feeds (quiz.coalescer)."""
    coalescer.changed(game_ids)


@receiver(signals.game_changed, dispatch_uid="quiz.wake_autopilot")
def wake_autopilot(sender: Any, **kwargs: Any) -> None:
    """This process's autopilot plans the games' next automatic step now, not at its next poll."""
    autopilot.wake()
