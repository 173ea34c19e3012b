"""Admission control for joins: a global rate and a per-client rate (DESIGN §8).

The rates are GCRA limits with a burst (``QUIZ["JOIN_RATE"]``,
``QUIZ["JOIN_RATE_PER_CLIENT"]``), counted by ``realtime``'s shared rate
limiter: in Redis when ``REALTIME["LIMITS_REDIS_URL"]`` is set (every process
spends one budget), in this process otherwise.

They are counted once, where the join first meets the site:

- at the front door (:data:`JOIN_GATE`, in ``config/asgi.py``), before Django:
  a refusal costs no request object, no middleware, no view and no database,
  and the front door also sheds joins while the process is behind;
- in the view (:func:`admit_join`), for a site served without the front door
  (the test client, a project's own ASGI set-up). A join the front door
  admitted is not counted again.

Beyond either rate: 429, ``{"error": {"code": "throttled", ...}}`` and a
``Retry-After`` of the whole seconds until the limit allows a join again.
A process that already has ``JOIN_MAX_IN_FLIGHT`` joins under way refuses more
at once (429, ``Retry-After: 1``).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from realtime.auth.limits import rate_limiter
from realtime.ops.metrics import metrics as realtime_metrics
from realtime.transport.clients import client_address
from realtime.transport.frontdoor import ADMITTED, Gate, Refusal, json_refusal

from .conf import quiz_settings
from .exceptions import Throttled
from .metrics import metrics


@functools.cache
def _throttled() -> Refusal:
    # The same bytes every time: a storm is refused thousands of times a second.
    return json_refusal({"error": {"code": Throttled.code, "message": Throttled.default_message}})


def _refusal(retry_after: int) -> Refusal:
    metrics.join_throttled()
    return _throttled()


JOIN_GATE = Gate(
    operation="quiz.join",
    protocol="http",
    path=r"/api/quiz/games/[^/]+/join",
    client_rate=lambda: quiz_settings.join_rate_per_client,
    global_rate=lambda: quiz_settings.join_rate,
    refusal=_refusal,
)


async def admit_join(request: Any) -> None:
    """Count one join attempt against both rates, unless the front door did.

    Raises:
        Throttled: either rate is spent; ``retry_after`` is whole seconds, at least 1.
    """
    scope = getattr(request, "scope", None) or {"client": (request.META.get("REMOTE_ADDR"), 0)}
    if scope.get(ADMITTED) != JOIN_GATE.operation:
        wait = await rate_limiter.take(JOIN_GATE.checks(client_address(scope)))
        if wait > 0:
            realtime_metrics.refused(JOIN_GATE.operation, "rate")
            metrics.join_throttled()
            raise Throttled(retry_after=max(1, math.ceil(wait)))
    metrics.join_admitted()


class JoinsInFlight:
    """Joins being processed by this process right now (the view holds one slot each)."""

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> JoinsInFlight:
        if self.count >= quiz_settings.join_max_in_flight:
            metrics.join_throttled()
            realtime_metrics.refused(JOIN_GATE.operation, "overload")
            raise Throttled(retry_after=1)
        self.count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.count -= 1


joins_in_flight = JoinsInFlight()
