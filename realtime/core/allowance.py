"""Leased allowances: a process's share of a shared GCRA limit, spent without a round trip. Pure.

A high-volume shared limit (the namespace's inbound events, 10,000/s) would
otherwise cost one round trip to the shared store per decision, and a client's
pipelined publishes would each wait for it. Instead a process *leases* a slice
of the shared budget in one atomic step (:func:`gcra_lease`, the same
arithmetic as :func:`realtime.core.rates.gcra` for many events at once, which
:mod:`realtime.auth.limits` runs in Redis) and spends it locally
(:class:`Allowance`), leasing the next slice before this one runs out.

Accuracy, with N processes and a slice of S events (:func:`lease_size`):

- every event admitted was counted in the shared store before it was spent, so
  over the long run the rate is exact;
- in any window the processes admit at most N·S events more than the limit
  allows (each holds at most S counted but unspent when the window opens);
- and at most N·S fewer: what the processes hold unspent is counted already.
  An allowance not spent within its lease (:data:`LEASE_TTL`) is given back
  with the next lease, so held allowance never accumulates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from realtime.core.rates import GCRA_SLACK, Limit

# Seconds a leased allowance may be spent; what is left is given back with the next lease.
LEASE_TTL = 1.0

# A slice smaller than this is not worth a lease: such a limit is low-volume,
# so its round trip per decision costs little, and it stays exact.
MIN_LEASE = 10


def lease_size(limit: Limit, seconds: float) -> int:
    """Events per lease: ``seconds`` of the limit's rate, and no more than that fraction of its burst.

    0 when leasing is off (``seconds`` 0) or the slice would be under
    :data:`MIN_LEASE`: the limit is then counted exactly, decision by decision.
    """
    size = math.floor(seconds * min(limit.rate.per_second, limit.burst))
    return size if size >= MIN_LEASE else 0


class Lease(NamedTuple):
    """The answer of :func:`gcra_lease`."""

    tat: float  # the key's new theoretical arrival time (stored even when nothing is granted)
    granted: int  # events counted now, for the process to spend
    wait: float  # 0 when granted, else seconds until ``need`` events would be


def gcra_lease(tat: float | None, now: float, limit: Limit, want: int, need: int, giveback: int = 0) -> Lease:
    """Count up to ``want`` events at once against one key, at least ``need`` of them or none.

    ``giveback`` events leased earlier and never spent are uncounted first.
    Granting ``k`` events is what ``k`` calls of :func:`realtime.core.rates.gcra`
    in a row would allow, so a lease never lets through more than the limit.
    """
    start = max(tat if tat is not None else now, now) - giveback * limit.interval
    start = max(start, now)  # a bucket cannot be fuller than full
    room = math.floor((now + limit.tolerance + GCRA_SLACK - start) / limit.interval)
    granted = min(want, max(room, 0))
    if granted < need or granted == 0:
        wait = start + need * limit.interval - now - limit.tolerance
        return Lease(start, 0, max(wait, GCRA_SLACK * 2))
    return Lease(start + granted * limit.interval, granted, 0.0)


@dataclass(slots=True)
class Allowance:
    """Events of one shared limit this process has leased and not yet spent."""

    events: int = 0
    expires: float = 0.0
    # Leased, never spent, past their lease: given back with the next lease.
    unspent: int = 0

    def spend(self, cost: int, now: float) -> bool:
        """Spend ``cost`` events if they are held and their lease still runs."""
        self.expire(now)
        if cost > self.events:
            return False
        self.events -= cost
        return True

    def expire(self, now: float) -> None:
        """Past its lease, what is held is no longer spent: it waits to be given back."""
        if self.events and now >= self.expires:
            self.unspent += self.events
            self.events = 0

    def low(self, size: int) -> bool:
        """Time to lease the next slice: less than half of one is left."""
        return self.events * 2 < size

    def giveback(self) -> int:
        """The events to give back with the lease being asked for now (handed over once)."""
        unspent, self.unspent = self.unspent, 0
        return unspent

    def add(self, granted: int, now: float) -> None:
        """A lease came back: its events join what is held, all under the fresh lease."""
        self.events += granted
        self.expires = now + LEASE_TTL
