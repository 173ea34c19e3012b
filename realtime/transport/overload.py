"""Is this process behind? How much new work the front door may let in (``REALTIME["FRONT_DOOR"]``).

The front door admits a gated request while fewer than :attr:`Overload.limit`
are under way, and refuses it at once otherwise. The limit adapts to what the
process can do (additive increase, multiplicative decrease, as TCP's window),
once per 100 ms window of finished requests:

- **down** by a fifth when even the fastest request of the window waited more
  than ``MAX_QUEUE_DELAY`` (CoDel's signal: a standing queue, not a burst
  passing through);
- **up** by a tenth (at least one) when requests used most of the limit and
  waited less than that.

It never goes below ``MIN_IN_FLIGHT`` (work keeps flowing, so the signals keep
coming) nor above ``MAX_IN_FLIGHT``. The event loop's lateness (a 50 ms timer's,
beyond ``MAX_LOOP_LAG``) holds back WebSocket connects, whose handshakes are
loop work; it does not shrink the limit: when refusals themselves keep the loop
busy, fewer admitted requests would not make it less late, only the goodput
smaller. Refusing new work while the limit is
reached keeps the admitted work moving at the speed of an unloaded server,
instead of every request waiting in a queue that only grows (congestion
collapse): the goodput holds under any offered load the server can still read.
"""

from __future__ import annotations

import asyncio
import math
import os
import resource
import time

from realtime.conf import realtime_settings
from realtime.state import register

SAMPLE_INTERVAL = 0.05
WINDOW = 0.1
DECREASE = 0.8
INCREASE = 0.1


class Overload:
    """This process's load and admission limit, as the front door reads them (one per process)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.lag = 0.0
        # The fastest request of the last window: the delay no request escaped.
        self.queue_delay = 0.0
        self.limit: float | None = None
        self._window_end = 0.0
        self._window_min = math.inf
        self._window_peak = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sampler: asyncio.Task[None] | None = None

    def watch(self) -> None:
        """Measure the running loop's lag from now on (once per loop)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._sampler is None or self._sampler.done():
            self._loop = loop
            self.lag = 0.0
            self._sampler = loop.create_task(self._sample(), name="realtime-overload-sampler")

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            start = loop.time()
            await asyncio.sleep(SAMPLE_INTERVAL)
            self.lag = max(0.0, loop.time() - start - SAMPLE_INTERVAL)

    def _bounds(self) -> tuple[int, int]:
        option = realtime_settings.front_door_option  # read on every gated request
        return int(option("MIN_IN_FLIGHT")), int(option("MAX_IN_FLIGHT"))

    def current_limit(self) -> int:
        """Gated requests that may be under way at once now."""
        low, high = self._bounds()
        if self.limit is None:
            self.limit = float(high)
        return max(low, min(high, int(self.limit)))

    def admits(self) -> bool:
        """Whether a new gated request may start now."""
        return self.in_flight < self.current_limit()

    def on_time(self) -> bool:
        """Whether the event loop keeps up (ran within ``MAX_LOOP_LAG`` of its timers)."""
        return self.lag <= float(realtime_settings.front_door_option("MAX_LOOP_LAG"))

    def descriptors_full(self) -> bool:
        """Whether the process holds ``MAX_DESCRIPTOR_SHARE`` of its file-descriptor limit or more.

        A new connection then waits for none: it is refused, so the descriptors
        left serve the database, the files and the work already admitted, which
        would otherwise fail with ``EMFILE`` (docs/BENCHMARKS.md, "Crowd-proof
        entry"). The count is the size Linux reports for ``/proc/self/fd`` (a few
        µs, since Linux 6.2); where that is not known, nothing is refused.
        """
        share = float(realtime_settings.front_door_option("MAX_DESCRIPTOR_SHARE"))
        if share <= 0:
            return False
        try:
            held = os.stat("/proc/self/fd").st_size
        except OSError:
            return False
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        return held > 0 and soft != resource.RLIM_INFINITY and held >= share * soft

    def started(self) -> float:
        """An admitted request begins; returns its start, for :meth:`finished`."""
        self.in_flight += 1
        self._window_peak = max(self._window_peak, self.in_flight)
        return time.monotonic()

    def finished(self, started: float) -> None:
        """An admitted request was answered: count its time, and adapt the limit once a window."""
        self.in_flight -= 1
        now = time.monotonic()
        self._window_min = min(self._window_min, now - started)
        if now < self._window_end:
            return
        if self._window_end:
            self._adapt()
        self._window_min = math.inf
        self._window_peak = self.in_flight
        self._window_end = now + WINDOW

    def _adapt(self) -> None:
        low, high = self._bounds()
        limit = float(self.current_limit())
        self.queue_delay = self._window_min
        if self.queue_delay > float(realtime_settings.front_door_option("MAX_QUEUE_DELAY")):
            limit *= DECREASE
        elif self._window_peak >= limit / 2:
            limit += max(1.0, limit * INCREASE)
        self.limit = max(float(low), min(float(high), limit))

    def clear(self) -> None:
        """Forget the measurements and the adapted limit (not the requests under way)."""
        self.lag = self.queue_delay = 0.0
        self.limit = None
        self._window_min = math.inf
        self._window_end = 0.0
        self._window_peak = 0


# One per process; a change of REALTIME forgets its measurements (realtime.state).
overload = register(Overload())
