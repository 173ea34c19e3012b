"""Receivers of the quiz's own signals (quiz.signals): wiring only, no domain rules."""

from __future__ import annotations

from typing import Any

from django.dispatch import receiver

from . import signals, worker


@receiver(signals.answer_received, dispatch_uid="quiz.wake_worker")
def wake_worker(sender: Any, **kwargs: Any) -> None:
    """An in-process worker scores new answers at once instead of at its next poll."""
    worker.wake()
