"""Admission control for joins: a global rate and a per-client rate (DESIGN §8).

Counters live in Django's cache through django-ratelimit, so with Redis as the
cache every server process shares the global budget. Beyond either rate the
join is refused with 429 and a ``Retry-After`` until the current window ends.
"""

from __future__ import annotations

import math
from typing import Any

from django_ratelimit.core import get_usage

from .conf import quiz_settings
from .exceptions import Throttled


def _global_key(group: str, request: Any) -> str:
    return "all"


def admit_join(request: Any) -> None:
    """Count one join attempt against both rates.

    Raises:
        Throttled: either rate is exhausted; ``retry_after`` is whole seconds, at least 1.
    """
    for key, rate, group in (
        ("ip", quiz_settings.join_rate_per_client, "quiz.join.client"),
        (_global_key, quiz_settings.join_rate, "quiz.join.global"),
    ):
        usage = get_usage(request, group=group, key=key, rate=rate, method="POST", increment=True)
        if usage is not None and usage["should_limit"]:
            raise Throttled(retry_after=max(1, math.ceil(usage["time_left"])))
