"""This process's limiters: failed authorizations, and the shared rate limiter.

:data:`auth_failure_limiter` is per process on purpose: it protects the process
that would otherwise do the work, with no round trip to a shared store on the
hot path. With N processes the site-wide allowance is N times the setting.

:data:`rate_limiter` counts events against :class:`~realtime.core.rates.Limit`\\ s
with GCRA (:func:`realtime.core.rates.gcra`). With ``REALTIME["LIMITS_REDIS_URL"]``
every process shares the counts: one ``EVALSHA`` per decision runs the same
arithmetic in Redis, for every key of the decision at once, on Redis's clock,
over a small pool of connections every decision shares.
Without it (the embedded default) the counts are this process's. A Redis that
does not answer within ``LIMITS_REDIS_TIMEOUT`` does not stop admission: the
decision falls back to this process's counts, and the fallback is counted.

A change of ``REALTIME`` resets them all (:mod:`realtime.state`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from realtime.conf import realtime_settings
from realtime.core.rates import FailureLimiter, Gcra, Limit, SettingLimiter, parse_limit
from realtime.exceptions import RateExceeded
from realtime.ops.metrics import metrics
from realtime.state import register
from realtime.store.redis import async_client
from realtime.store.selectors import NamespaceConfig

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)


# Failed authorizations per client address (``REALTIME["AUTH_FAILURE_RATE"]``).
auth_failure_limiter = register(
    SettingLimiter(lambda: realtime_settings.auth_failure_rate, FailureLimiter.from_rate)
)

# GCRA over every key of one decision, all or nothing, as Gcra.take does.
# KEYS: the keys; ARGV: for each key, its interval and its tolerance (seconds).
# Returns "0" (allowed, every key advanced) or the seconds to wait, as text
# (Lua numbers become integers on the way out).
GCRA_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local wait = 0
local tats = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local tolerance = tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  tats[i] = tat + interval
  local over = tats[i] - now - tolerance
  if over > 0.000001 and over > wait then wait = over end  -- rounding forgiven, as core.rates.gcra
end
if wait > 0 then return tostring(wait) end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, tostring(tats[i]), 'PX', math.ceil((tats[i] - now + 1) * 1000))
end
return '0'
"""

KEY_PREFIX = "rt:rate:"
POOL_SIZE = 16


class RateLimiter:
    """GCRA limits per key, in Redis when ``LIMITS_REDIS_URL`` is set, else in this process."""

    def __init__(self) -> None:
        self.local = Gcra()
        self._client: Redis | None = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._client_url: str | None = None
        self._script: Any = None
        # Decisions Redis could not make (they fell back to this process's counts).
        self.fallbacks = 0

    async def take(self, checks: list[tuple[str, Limit]], cost: int = 1) -> float:
        """Count ``cost`` events against every ``(key, limit)``: 0 if allowed, else seconds to wait.

        All or nothing: events refused by one key are counted by none.
        """
        if not checks:
            return 0.0
        url = realtime_settings.limits_redis_url
        if url is None:
            return self.local.take(checks, time.monotonic(), cost)
        try:
            script = self._script_for(url)
            args: list[float] = []
            for _, limit in checks:
                # cost events advance the arrival time by cost intervals (core.rates.gcra).
                args += [cost * limit.interval, limit.tolerance]
            async with asyncio.timeout(realtime_settings.limits_redis_timeout):
                answer = await script(keys=[KEY_PREFIX + key for key, _ in checks], args=args)
            return float(answer)
        except Exception as error:  # Redis down or slow: admission goes on, per process
            self.fallbacks += 1
            if self.fallbacks == 1 or self.fallbacks % 1000 == 0:
                logger.warning("rate limits fall back to this process (%d times): %r", self.fallbacks, error)
            return self.local.take(checks, time.monotonic(), cost)

    def peek(self, checks: list[tuple[str, Limit]]) -> float:
        """Without waiting: the seconds :meth:`take` would make the client wait now, 0 if allowed.

        Counts nothing. Only this process's counts can be read without a round
        trip: with ``LIMITS_REDIS_URL`` set it answers 0 and :meth:`take` decides.
        """
        if not checks or realtime_settings.limits_redis_url is not None:
            return 0.0
        return self.local.peek(checks, time.monotonic())

    def _script_for(self, url: str) -> Any:
        # A client belongs to the event loop it was made on (tests run one loop per test).
        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop or self._client_url != url:
            # A few connections shared by every decision: a crowd arriving at
            # once must not open a connection each (their handshakes would
            # outlast the timeout, and every decision would fall back).
            # A Sentinel URL follows the master through a failover.
            self._client = async_client(url, max_connections=POOL_SIZE)
            self._client_loop, self._client_url = loop, url
            self._script = self._client.register_script(GCRA_SCRIPT)
        return self._script

    async def aclose(self) -> None:
        """Close the Redis connections (for a process or test that ends its loop)."""
        client, self._client = self._client, None
        self._script = None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    def clear(self) -> None:
        self.local.clear()
        self._client = self._client_loop = self._client_url = self._script = None


# Every rate of the front door and of the operations; reset with REALTIME.
rate_limiter = register(RateLimiter())


# -- the rates of operations (PROTOCOL §7, §12) ----------------------------------------------------


def _namespace_limit(own: str, default: str | None) -> Limit | None:
    text = own or default
    return parse_limit(text) if text else None


_PLURAL = {"publish": "publishes", "subscribe": "subscribes"}


def connection_take(rates: Gcra, operation: str, namespace: NamespaceConfig) -> None:
    """Count one ``publish`` or ``subscribe`` of a connection (its own ``rates``) in ``namespace``.

    Per connection and per process by nature: the connection lives in one process.

    Raises:
        RateExceeded: the namespace's rate for one connection is spent.
    """
    setting = f"{operation}_rate_per_connection"  # publish_… or subscribe_…
    limit = _namespace_limit(getattr(namespace, setting), getattr(realtime_settings, setting))
    if limit is None:
        return
    wait = rates.take([(f"{operation}:{namespace.name}", limit)], time.monotonic())
    if wait > 0:
        metrics.refused(operation, "rate")
        message = f"Too many {_PLURAL[operation]} on this connection; retry after a delay."
        raise RateExceeded(message, retry_after=wait)


async def inbound_events_take(namespace: NamespaceConfig, count: int) -> None:
    """Count ``count`` events published by a client to ``namespace``, every process together.

    Raises:
        RateExceeded: the namespace's inbound event rate is spent.
    """
    limit = _namespace_limit(namespace.inbound_event_rate, realtime_settings.inbound_event_rate)
    if limit is None:
        return
    key = f"inbound:{namespace.name}:{namespace.inbound_event_rate or realtime_settings.inbound_event_rate}"
    wait = await rate_limiter.take([(key, limit)], cost=count)
    if wait > 0:
        metrics.refused("inbound_events", "rate")
        raise RateExceeded(
            f"Too many events published to {namespace.name!r} right now; retry after a delay.",
            retry_after=wait,
        )
