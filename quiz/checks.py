"""System checks for ``QUIZ`` settings (ids ``quiz.E0xx``)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Error, Tags, register

from realtime.checks import rate_errors

from .conf import quiz_settings


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The join rates read as rates; otherwise every join would fail."""
    rates = {"JOIN_RATE": quiz_settings.join_rate, "JOIN_RATE_PER_CLIENT": quiz_settings.join_rate_per_client}
    return rate_errors("QUIZ", rates, check_id="quiz.E001")


@register(Tags.compatibility)
def check_autopilot(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The autopilot sleeps at most AUTOPILOT_POLL seconds: a positive number."""
    try:
        poll = quiz_settings.autopilot_poll
    except (TypeError, ValueError):
        poll = 0.0
    if poll > 0:
        return []
    return [Error("QUIZ['AUTOPILOT_POLL'] must be a positive number of seconds.", id="quiz.E002")]
