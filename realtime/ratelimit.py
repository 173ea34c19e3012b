"""Rate limits kept in this process: connection storms and credential guessing. Pure.

Both are per process on purpose: they protect the process that would otherwise
do the work, with no round trip to a shared store on the hot path. With N
processes the site-wide allowance is N times the setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_RATE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*\Z")
_PERIODS = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0}
_PERIODS.update({"h": 3600.0, "hour": 3600.0})


def parse_rate(text: str) -> tuple[float, float]:
    """``"2000/s"`` → (2000 events, per 1.0 s).

    Raises:
        ValueError: not of the form ``N/s``, ``N/m`` or ``N/h``.
    """
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"a rate is N/s, N/m or N/h, not {text!r}")
    return float(match.group(1)), _PERIODS[match.group(2)]


@dataclass(slots=True)
class TokenBucket:
    """Allows ``rate`` events per ``period`` on average, bursts up to ``rate``."""

    rate: float
    period: float
    tokens: float = -1.0
    updated: float = 0.0

    @classmethod
    def from_rate(cls, text: str) -> TokenBucket:
        rate, period = parse_rate(text)
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
        limit, period = parse_rate(text)
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
