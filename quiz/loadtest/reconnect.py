"""When a simulated player connects again, and after how long: the shipped clients' policy.

A refused or broken connect is retried as ``realtime.js`` retries it on the
quiz's pages (``quiz/static/quiz/common.js``, ``RETRY_CAP_MS``): the first retry
at once (most drops are brief), then exponential backoff with full jitter, a
delay in ``[0, min(cap, base · 2^(retry-2))]`` with a base and a cap of 1 s.
A browser cannot read an HTTP answer to its upgrade; a load test can, and a
``Retry-After`` it is given is honoured: the jittered delay comes after it.

What would fail again is not retried (PROTOCOL §3.1): a ``connection_error``
saying unauthorized or bad request (``realtime.js``'s ``FATAL_TYPES`` and
``FATAL_CODES``), an HTTP 4xx other than 429 on the upgrade, a subscribe refused.

Pure: :func:`classify_error` and :func:`classify_frame` name a failed attempt,
:meth:`RetryPolicy.delay` says how long to wait before the next one.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum

from websockets.exceptions import InvalidStatus, WebSocketException

# realtime.js: §3.1, a connection_error of these kinds would fail again.
FATAL_TYPES = frozenset({"UnauthorizedException", "BadRequestException"})
FATAL_CODES = frozenset({400, 401, 403})
# An upgrade answered with these is a refusal to retry (429, or 503 from a proxy or a draining site).
REFUSAL_STATUSES = frozenset({429, 503})
# A proxy whose upstream went away (a restart) answers these: the next attempt may land elsewhere.
GATEWAY_STATUSES = frozenset({502, 504})


class Failure(StrEnum):
    """Why one connect attempt failed; the value is how the report names it."""

    REFUSED = "connection_error LimitExceededError (429)"
    HTTP_REFUSED = "HTTP 429/503 on the upgrade"
    DROPPED = "connection refused, reset or closed"
    TIMED_OUT = "timed out"
    OTHER = "other connection_error"
    FATAL = "not retried"

    @property
    def refusal(self) -> bool:
        """The server said "too many, come back later" (the figure a run reports as refused)."""
        return self in (Failure.REFUSED, Failure.HTTP_REFUSED)

    @property
    def retryable(self) -> bool:
        return self is not Failure.FATAL


@dataclass(frozen=True, slots=True)
class Attempt:
    """A failed connect attempt: its kind, the server's ``Retry-After`` (s) if any, and a description."""

    failure: Failure
    detail: str
    retry_after: float | None = None


def classify_frame(frame: dict[str, object]) -> Attempt:
    """A frame other than ``connection_ack`` (and ``ka``) in answer to ``connection_init``."""
    detail = f"expected connection_ack, got {frame}"
    if frame.get("type") != "connection_error":
        return Attempt(Failure.OTHER, detail)
    errors = frame.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    error_type, error_code = first.get("errorType"), first.get("errorCode")
    if error_type in FATAL_TYPES or error_code in FATAL_CODES:
        return Attempt(Failure.FATAL, detail)
    if error_type == "LimitExceededError" or error_code == 429:
        return Attempt(Failure.REFUSED, detail)
    return Attempt(Failure.OTHER, detail)


def classify_error(error: BaseException) -> Attempt:
    """An exception raised while connecting, before ``connection_ack``."""
    detail = f"{type(error).__name__}: {error}"
    if isinstance(error, InvalidStatus):
        status = error.response.status_code
        if status in REFUSAL_STATUSES:
            retry_after = _retry_after(error.response.headers.get("Retry-After"))
            return Attempt(Failure.HTTP_REFUSED, detail, retry_after)
        if status in GATEWAY_STATUSES:
            return Attempt(Failure.DROPPED, detail)
        return Attempt(Failure.FATAL, detail)
    if isinstance(error, TimeoutError):
        return Attempt(Failure.TIMED_OUT, detail)
    if isinstance(error, (OSError, EOFError, WebSocketException)):
        # Refused or reset by a process going away, or closed before connection_ack.
        return Attempt(Failure.DROPPED, detail)
    return Attempt(Failure.FATAL, detail)


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (the front door sends whole seconds; a date is not used here)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and seconds >= 0 else None


@dataclass(frozen=True)
class RetryPolicy:
    """``realtime.js``'s reconnection backoff with the quiz pages' cap (``maxRetryDelayMs`` 1000)."""

    base: float = 1.0
    cap: float = 1.0

    def delay(self, retry: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds before retry number ``retry`` (1 for the first): at once, then full jitter."""
        jitter = 0.0 if retry <= 1 else rng.uniform(0.0, min(self.cap, self.base * 2 ** (retry - 2)))
        return (retry_after or 0.0) + jitter


def tally(retried: Counter[Failure], *, refusals: bool) -> str:
    """``"12 (connection_error LimitExceededError (429): 8, HTTP 429/503 on the upgrade: 4)"``:
    the refusals retried (``refusals``), or the other failures retried, with each kind's count."""
    counts = [(kind, retried[kind]) for kind in Failure if kind.refusal == refusals and retried[kind]]
    total = sum(count for _, count in counts)
    return f"{total} ({', '.join(f'{kind}: {count}' for kind, count in counts)})" if counts else "0"
