"""Admission control for joins: a global rate and a per-client rate (DESIGN §8).

Counters live in Django's cache through django-ratelimit, so with Redis as the
cache every server process shares the global budget. Beyond either rate the
join is refused with 429 and a ``Retry-After`` until the current window ends.
With the local-memory cache the counters are per process anyway: they are then
kept in a dict (:class:`LocalWindows`), without django-ratelimit's key hashing
and the cache's pickling and locking, which cost as much as the rest of a join.

A process that already has ``JOIN_MAX_IN_FLIGHT`` joins under way refuses more
at once (429, ``Retry-After: 1``): when the server is slower than the admitted
rate, a fast refusal beats a 201 that arrives seconds late.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache.backends.locmem import LocMemCache
from django_ratelimit.core import get_usage

from realtime.core.rates import parse_rate
from realtime.state import register

from .conf import quiz_settings
from .exceptions import Throttled
from .metrics import metrics


def _global_key(group: str, request: Any) -> str:
    return "all"


class LocalWindows:
    """Fixed-window counters in this process's memory (thread-safe)."""

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._windows: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def hit(self, group: str, key: str, limit: int, period: int) -> tuple[bool, float]:
        """Count one attempt against ``limit`` per ``period`` seconds.

        Returns:
            (over the limit, seconds until the window ends).
        """
        now = time.time()
        end = (now // period + 1) * period
        with self._lock:
            window_end, count = self._windows.get((group, key), (end, 0))
            count = count + 1 if window_end == end else 1
            if len(self._windows) >= self.MAX_KEYS:
                self._windows = {k: v for k, v in self._windows.items() if v[0] > now}
            self._windows[(group, key)] = (end, count)
        return count > limit, end - now

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()


local_windows = register(LocalWindows())


def _client_address(request: Any) -> str:
    address = request.META["REMOTE_ADDR"]
    if ":" in address:
        # IPv6 clients count per /64, as django-ratelimit counts them.
        return str(ipaddress.ip_network(f"{address}/64", strict=False).network_address)
    return address


def _default_cache() -> Any:
    from django.core.cache import caches

    return caches[getattr(settings, "RATELIMIT_USE_CACHE", "default")]


def admit_join(request: Any) -> None:
    """Count one join attempt against both rates.

    Raises:
        Throttled: either rate is exhausted; ``retry_after`` is whole seconds, at least 1.
    """
    local = isinstance(_default_cache(), LocMemCache) and not getattr(settings, "RATELIMIT_IP_META_KEY", None)
    client = _client_address(request) if local else ""
    for key, rate, group in (
        ("ip", quiz_settings.join_rate_per_client, "quiz.join.client"),
        (_global_key, quiz_settings.join_rate, "quiz.join.global"),
    ):
        # Fixed windows count whole joins in whole seconds. django-ratelimit is
        # handed the pair, not the text: its own grammar has no decimals, and it
        # takes any string with a dot for the dotted path of a function.
        limit, period = parse_rate(rate).whole()
        if local:
            limited, time_left = local_windows.hit(group, client if key == "ip" else "all", limit, period)
        else:
            usage = get_usage(
                request, group=group, key=key, rate=(limit, period), method="POST", increment=True
            )
            limited = usage is not None and usage["should_limit"]
            time_left = usage["time_left"] if usage is not None else 0
        if limited:
            metrics.join_throttled()
            raise Throttled(retry_after=max(1, math.ceil(time_left)))
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
