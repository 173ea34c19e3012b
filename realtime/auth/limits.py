"""This process's limiters: failed authorizations, and the shared rate limiter.

:data:`auth_failure_limiter` is per process on purpose: it protects the process
that would otherwise do the work, with no round trip to a shared store on the
hot path. With N processes the site-wide allowance is N times the setting.

:data:`rate_limiter` counts events against :class:`~realtime.core.rates.Limit`\\ s
with GCRA (:func:`realtime.core.rates.gcra`). With ``REALTIME["LIMITS_REDIS_URL"]``
every process shares the counts: one ``EVALSHA`` per decision runs the same
arithmetic in Redis, for every key of the decision at once, on Redis's clock,
over a small pool of connections every decision shares.
The namespace's inbound-event limit, a high-volume one, is the exception: a
process leases a slice of it in one call (``LEASE_SCRIPT``,
:func:`realtime.core.allowance.gcra_lease`) and spends it without a round trip,
leasing the next slice in the background while half of one is left
(:meth:`RateLimiter.take_leased`; the accuracy bound is in
:mod:`realtime.core.allowance` and beside ``INBOUND_EVENT_LEASE``).
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
from realtime.core.allowance import Allowance, lease_size
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

# A lease (realtime.core.allowance.gcra_lease, the same arithmetic): up to
# ``want`` events of one key at once, at least ``need`` or none, after giving
# back ``giveback`` events leased before and never spent.
# KEYS: the key; ARGV: interval, tolerance (seconds), want, need, giveback.
# Returns {granted, wait as text}.
LEASE_SCRIPT = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) + tonumber(now_parts[2]) / 1000000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local need = tonumber(ARGV[4])
local giveback = tonumber(ARGV[5])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
tat = tat - giveback * interval
if tat < now then tat = now end  -- a bucket cannot be fuller than full
local room = math.floor((now + tolerance + 0.000001 - tat) / interval)
if room < 0 then room = 0 end
local granted = math.min(want, room)
if granted < need or granted == 0 then
  if giveback > 0 then
    redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil((tat - now + 1) * 1000))
  end
  local wait = tat + need * interval - now - tolerance
  if wait < 0.000002 then wait = 0.000002 end
  return {0, tostring(wait)}
end
tat = tat + granted * interval
redis.call('SET', KEYS[1], tostring(tat), 'PX', math.ceil((tat - now + 1) * 1000))
return {granted, '0'}
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
        self._lease_script: Any = None
        # Leased allowances per key (take_leased), and the lease under way for each.
        self._allowances: dict[str, Allowance] = {}
        self._leasing: dict[str, asyncio.Task[float | None]] = {}
        self._waiting: dict[str, int] = {}  # events of the decisions waiting for a lease, per key
        # Decisions Redis could not make (they fell back to this process's counts),
        # and background leases it did not answer.
        self.fallbacks = 0
        # Leases Redis answered (one round trip each).
        self.leases = 0

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
            self._fell_back(error)
            return self.local.take(checks, time.monotonic(), cost)

    async def take_leased(self, key: str, limit: Limit, cost: int, size: int) -> float:
        """:meth:`take` for one key of a high-volume limit, spent from leases of ``size`` events.

        With ``LIMITS_REDIS_URL`` set and ``size`` > 0, a decision costs no round
        trip while this process holds ``cost`` leased events; a lease of the next
        slice starts in the background once less than half of one is held. Only a
        process that runs out waits, for the lease under way or one of its own.
        Otherwise (``size`` 0: a limit too small to lease) exactly :meth:`take`.
        """
        url = realtime_settings.limits_redis_url
        if url is None or size <= 0:
            return await self.take([(key, limit)], cost)
        allowance = self._allowances.get(key)
        if allowance is None:
            allowance = self._allowances[key] = Allowance()
        if allowance.spend(cost, time.monotonic()):
            self._refill_if_low(url, key, limit, size, allowance)
            return 0.0
        loop = asyncio.get_running_loop()
        # Out of leased events: wait for the lease under way, else ask for one big
        # enough for every decision waiting (a crowd's first publishes: one round
        # trip, not one each, and one answer for all when Redis refuses or does not
        # answer). A decision whose share others spent first waits for the next.
        waiting = self._waiting
        waiting[key] = waiting.get(key, 0) + cost
        try:
            while True:
                lease = self._leasing.get(key)
                if lease is None or lease.done() or lease.get_loop() is not loop:
                    held = allowance.events
                    want, need = size + waiting.get(key, cost) - held, max(cost - held, 1)
                    lease = self._start_lease(url, key, limit, allowance, want=want, need=need)
                wait = await asyncio.shield(lease)  # this decision's cancellation must not stop it
                if allowance.spend(cost, time.monotonic()):
                    self._refill_if_low(url, key, limit, size, allowance)
                    return 0.0
                if wait is None:  # Redis did not answer this lease (counted): as take
                    return self.local.take([(key, limit)], time.monotonic(), cost)
                if wait:
                    # Refused: the budget has no room for the lease's events, which were
                    # this decision's or another's (a publish is at most a few events).
                    return wait
        finally:
            left = waiting.get(key, cost) - cost
            if left > 0:
                waiting[key] = left
            else:
                waiting.pop(key, None)

    def _refill_if_low(self, url: str, key: str, limit: Limit, size: int, allowance: Allowance) -> None:
        lease = self._leasing.get(key)
        under_way = lease is not None and not lease.done() and lease.get_loop() is asyncio.get_running_loop()
        if allowance.low(size) and not under_way:
            # Whatever the budget holds up to one slice: a part of one is spent as well.
            self._start_lease(url, key, limit, allowance, want=size - allowance.events, need=1)

    def _start_lease(
        self, url: str, key: str, limit: Limit, allowance: Allowance, *, want: int, need: int
    ) -> asyncio.Task[float | None]:
        task = asyncio.get_running_loop().create_task(self._lease(url, key, limit, allowance, want, need))
        self._leasing[key] = task
        return task

    async def _lease(
        self, url: str, key: str, limit: Limit, allowance: Allowance, want: int, need: int
    ) -> float | None:
        """One lease in Redis; its events join ``allowance``.

        Returns:
            0 when granted, the seconds to wait when refused, ``None`` when Redis did not answer.
        """
        giveback = allowance.giveback()
        try:
            self._script_for(url)
            async with asyncio.timeout(realtime_settings.limits_redis_timeout):
                granted, wait = await self._lease_script(
                    keys=[KEY_PREFIX + key], args=[limit.interval, limit.tolerance, want, need, giveback]
                )
        except Exception as error:  # Redis down or slow: the decision falls back to this process
            self._fell_back(error)
            return None
        self.leases += 1
        allowance.add(int(granted), time.monotonic())
        return float(wait)

    def _fell_back(self, error: Exception) -> None:
        self.fallbacks += 1
        if self.fallbacks == 1 or self.fallbacks % 1000 == 0:
            logger.warning("rate limits fall back to this process (%d times): %r", self.fallbacks, error)

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
            self._lease_script = self._client.register_script(LEASE_SCRIPT)
        return self._script

    async def aclose(self) -> None:
        """Close the Redis connections (for a process or test that ends its loop)."""
        leases = [task for task in self._leasing.values() if task.get_loop() is asyncio.get_running_loop()]
        await asyncio.gather(*leases, return_exceptions=True)  # before their connections close
        self._leasing.clear()
        client, self._client = self._client, None
        self._script = self._lease_script = None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    def clear(self) -> None:
        self.local.clear()
        # Leased events are forgotten, never spent: the shared budget counted them (an under-admission
        # of at most one slice per key), and a lease under way adds to an allowance no longer read.
        self._allowances.clear()
        self._leasing.clear()
        self._waiting.clear()
        self._client = self._client_loop = self._client_url = self._script = self._lease_script = None


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
    # Leased, not a round trip per publish: a client's pipelined publishes reach the
    # channel layer together (docs/SCALING.md); the bound is INBOUND_EVENT_LEASE's.
    size = lease_size(limit, realtime_settings.inbound_event_lease)
    wait = await rate_limiter.take_leased(key, limit, count, size)
    if wait > 0:
        metrics.refused("inbound_events", "rate")
        raise RateExceeded(
            f"Too many events published to {namespace.name!r} right now; retry after a delay.",
            retry_after=wait,
        )
