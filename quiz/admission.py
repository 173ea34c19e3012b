"""Admission control for joins: a global rate and a per-client rate (DESIGN §8).

Counters live in Django's cache through django-ratelimit, so with Redis as the
cache every server process shares the global budget. Beyond either rate the
join is refused with 429 and a ``Retry-After`` until the current window ends.

A process that already has ``JOIN_MAX_IN_FLIGHT`` joins under way refuses more
at once (429, ``Retry-After: 1``): when the server is slower than the admitted
rate, a fast refusal beats a 201 that arrives seconds late.
"""

from __future__ import annotations

import math
from typing import Any

from django_ratelimit.core import get_usage

from .conf import quiz_settings
from .exceptions import Throttled
from .metrics import metrics


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
            metrics.join_throttled()
            raise Throttled(retry_after=max(1, math.ceil(usage["time_left"])))
    metrics.join_admitted()


class JoinsInFlight:
    """Joins being processed by this process right now (the view holds one slot each)."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> JoinsInFlight:
        if self.count >= quiz_settings.join_max_in_flight:
            metrics.join_throttled()
            raise Throttled(retry_after=1)
        self.count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.count -= 1


joins_in_flight = JoinsInFlight()
