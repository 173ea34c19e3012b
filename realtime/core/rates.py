"""Rates: the one grammar of rate settings, and the limiters built from them. Pure.

:func:`parse_rate` reads every rate setting of the site, ``realtime``'s and the
quiz's; :func:`parse_limit` reads a rate with its burst (``"2000/s burst 400"``).
Values in, values out, the clock passed in; :class:`SettingLimiter` takes the
setting as a callable. The process's own limiter instances are in
:mod:`realtime.auth.limits`.

:func:`gcra` is the generic cell rate algorithm (a token bucket kept as one
number per key, the *theoretical arrival time*): no fixed windows, so no
boundary where twice the rate gets through, and one value to store per key,
which is what makes it cheap to share through Redis (:mod:`realtime.auth.limits`
runs the same arithmetic in a Lua script).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from math import lcm
from typing import Generic, NamedTuple, TypeVar

# One grammar for every rate setting of the site (REALTIME's CONNECT_RATE and
# AUTH_FAILURE_RATE, QUIZ's JOIN_RATE and JOIN_RATE_PER_CLIENT): a count, a
# slash, an optional multiple and a unit. "2000/s", "100/m", "0.5/s", "5/10s".
_NUMBER = r"\d+(?:\.\d+)?"
_RATE = re.compile(rf"\s*({_NUMBER})\s*/\s*({_NUMBER})?\s*(s|sec|second|m|min|minute|h|hour)\s*\Z")
_UNITS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_UNITS.update({"h": 3600.0, "hour": 3600.0})


class Rate(NamedTuple):
    """``events`` per ``period`` seconds; compares equal to the plain tuple."""

    events: float
    period: float

    @property
    def per_second(self) -> float:
        """Events per second on average."""
        return self.events / self.period

    def whole(self) -> tuple[int, int]:
        """The same rate as a whole count per a whole number of seconds.

        For fixed-window counters (django-ratelimit's among them), which count
        whole events in whole-second windows: ``0.5/s`` is ``(1, 2)``, ``2.5/m``
        is ``(5, 120)``.
        """
        if self.events.is_integer() and self.period.is_integer():
            return int(self.events), int(self.period)
        count = Fraction(self.events).limit_denominator(1_000_000)
        period = Fraction(self.period).limit_denominator(1_000_000)
        scale = lcm(count.denominator, period.denominator)
        return int(count * scale), int(period * scale)


@lru_cache(maxsize=64)
def parse_rate(text: str) -> Rate:
    """``"2000/s"`` → ``Rate(2000.0, 1.0)``; ``"5/10s"`` → ``Rate(5.0, 10.0)``.

    Accepted: a count (whole or decimal), ``/``, an optional multiple (whole or
    decimal) and a unit: ``s``/``sec``/``second``, ``m``/``min``/``minute`` or
    ``h``/``hour``, lowercase; spaces around the parts are ignored. Days are
    not a unit: a per-process limit over a day would forget itself on every
    restart. Pure, so the answers are kept (settings hold a handful of rates).

    Raises:
        ValueError: any other text, or a count or multiple of 0.
    """
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"a rate is N/s, N/m or N/h (N/10s: per 10 seconds), not {text!r}")
    count, multiple, unit = match.groups()
    rate = Rate(float(count), float(multiple or 1) * _UNITS[unit])
    if rate.events == 0 or rate.period == 0:
        raise ValueError(f"a rate's count and period must be more than 0, not {text!r}")
    return rate


_BURST = re.compile(r"\A(.*?)\s+burst\s+(\d+)\s*\Z")


class Limit(NamedTuple):
    """A rate and the burst it allows: at most ``burst`` events at once, then ``rate`` on average."""

    rate: Rate
    burst: float

    @property
    def interval(self) -> float:
        """Seconds between two events at the average rate (GCRA's emission interval)."""
        return self.rate.period / self.rate.events

    @property
    def tolerance(self) -> float:
        """How far ahead of now a key's theoretical arrival time may run: the burst, in seconds."""
        return self.burst * self.interval


@lru_cache(maxsize=64)
def parse_limit(text: str) -> Limit:
    """``"2000/s"`` → a burst of one period's count (2000); ``"2000/s burst 400"`` → 400.

    The rate is read by :func:`parse_rate`; the burst is a whole number of at least 1.

    Raises:
        ValueError: the rate is not one, or the burst is 0.
    """
    match = _BURST.match(text)
    rate = parse_rate(match.group(1) if match else text)
    burst = float(match.group(2)) if match else max(1.0, rate.events)
    if burst < 1:
        raise ValueError(f"a burst must be at least 1, not {text!r}")
    return Limit(rate, burst)


# Seconds of rounding error a decision forgives (far below any rate's interval).
GCRA_SLACK = 1e-6


def gcra(tat: float | None, now: float, limit: Limit, cost: int = 1) -> tuple[float, float]:
    """``cost`` events against one key's theoretical arrival time ``tat`` (``None``: never seen).

    A cost above the limit's burst is never allowed.

    Returns:
        ``(new_tat, wait)``: ``wait`` is 0 when the event is allowed, and the key
        then stores ``new_tat``; otherwise the seconds until it would be, and the
        key keeps its old value.
    """
    new_tat = max(tat if tat is not None else now, now) + cost * limit.interval
    wait = new_tat - now - limit.tolerance
    # (now + interval) - now is not always interval in floating point: without
    # the slack, the first event of a burst of 1 was refused about 1 time in 6.
    return new_tat, wait if wait > GCRA_SLACK else 0.0


class Gcra:
    """Theoretical arrival times per key, in this process's memory (bounded).

    :meth:`take` checks several keys at once, all or nothing: an event counted
    against a client and the whole site is refused by either, and then neither
    counts it.
    """

    __slots__ = ("max_keys", "_tats")

    def __init__(self, max_keys: int = 100_000) -> None:
        self.max_keys = max_keys
        self._tats: dict[str, float] = {}

    def take(self, checks: list[tuple[str, Limit]], now: float, cost: int = 1) -> float:
        """Count ``cost`` events against every ``(key, limit)``: 0 if allowed, else seconds to wait."""
        new: list[float] = []
        wait = 0.0
        for key, limit in checks:
            tat, key_wait = gcra(self._tats.get(key), now, limit, cost)
            new.append(tat)
            wait = max(wait, key_wait)
        if wait > 0:
            return wait
        if len(self._tats) + len(checks) > self.max_keys:
            # A key whose arrival time has passed is as good as unseen: forget those.
            self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
            if len(self._tats) + len(checks) > self.max_keys:
                self._tats.clear()  # a spray of addresses: start again rather than grow
        for (key, _), tat in zip(checks, new, strict=True):
            self._tats[key] = tat
        return 0.0

    def peek(self, checks: list[tuple[str, Limit]], now: float, cost: int = 1) -> float:
        """What :meth:`take` would answer now, counting nothing: 0 if it would allow, else seconds to wait."""
        wait = 0.0
        for key, limit in checks:
            wait = max(wait, gcra(self._tats.get(key), now, limit, cost)[1])
        return wait

    def clear(self) -> None:
        self._tats.clear()


@dataclass(slots=True)
class TokenBucket:
    """Allows ``rate`` events per ``period`` on average, bursts up to ``rate``."""

    rate: float
    period: float
    tokens: float = -1.0
    updated: float = 0.0

    @classmethod
    def from_rate(cls, text: str) -> TokenBucket:
        """A full bucket for a rate text; raises ``ValueError`` as :func:`parse_limit` does.

        The bucket holds one period's count; a ``burst`` in the text is ignored
        here (the per-process connect budget predates it).
        """
        rate, period = parse_limit(text).rate
        return cls(rate, period)

    def allow(self, now: float) -> bool:
        if self.tokens < 0:
            self.tokens, self.updated = self.rate, now
        self.tokens = min(self.rate, self.tokens + (now - self.updated) * self.rate / self.period)
        self.updated = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next event would be allowed."""
        return max(0.0, (1.0 - self.tokens) * self.period / self.rate)


class FailureLimiter:
    """Counts failures per key (a client address) in fixed windows; blocks past the limit."""

    __slots__ = ("limit", "period", "max_keys", "_windows")

    def __init__(self, limit: float, period: float, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.period = period
        self.max_keys = max_keys
        self._windows: dict[str, tuple[float, int]] = {}

    @classmethod
    def from_rate(cls, text: str) -> FailureLimiter:
        """A limiter that has seen no failures; raises ``ValueError`` as :func:`parse_limit` does."""
        limit, period = parse_limit(text).rate
        return cls(limit, period)

    def blocked(self, key: str, now: float) -> bool:
        window = self._windows.get(key)
        return window is not None and now - window[0] < self.period and window[1] >= self.limit

    def failed(self, key: str, now: float) -> None:
        start, count = self._windows.get(key, (now, 0))
        if now - start >= self.period:
            start, count = now, 0
        if len(self._windows) >= self.max_keys and key not in self._windows:
            # Bounded memory under a spray of addresses: forget the oldest half.
            for stale in sorted(self._windows, key=lambda k: self._windows[k][0])[: self.max_keys // 2]:
                del self._windows[stale]
        self._windows[key] = (start, count + 1)


L = TypeVar("L")


class SettingLimiter(Generic[L]):
    """The limiter for a rate setting's current value, built anew when the value changes.

    Args:
        setting: returns the rate text now, or ``None`` for no limit.
        build: makes a fresh limiter from a rate text (``TokenBucket.from_rate``, ...).
    """

    __slots__ = ("_setting", "_build", "_text", "_limiter")

    def __init__(self, setting: Callable[[], str | None], build: Callable[[str], L]) -> None:
        self._setting = setting
        self._build = build
        self._text: str | None = None
        self._limiter: L | None = None

    def current(self) -> L | None:
        """The limiter for the setting as it is now; ``None`` when the setting is off.

        Raises:
            ValueError: the setting is not a rate (``manage.py check`` reports it first).
        """
        text = self._setting()
        if text is None:
            return None
        if text != self._text or self._limiter is None:
            self._limiter = self._build(text)
            self._text = text
        return self._limiter

    def clear(self) -> None:
        """Forget the limiter: the next :meth:`current` starts with a full allowance."""
        self._text = None
        self._limiter = None
