"""System checks for ``QUIZ`` settings (ids ``quiz.E0xx``)."""

from __future__ import annotations

from typing import Any

from django.core.checks import CheckMessage, Tags, register

from realtime.checks import rate_errors

from .conf import quiz_settings


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The join rates read as rates; otherwise every join would fail."""
    rates = {"JOIN_RATE": quiz_settings.join_rate, "JOIN_RATE_PER_CLIENT": quiz_settings.join_rate_per_client}
    return rate_errors("QUIZ", rates, check_id="quiz.E001")
