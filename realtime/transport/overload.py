"""Is this process behind? The signals the front door sheds on (``REALTIME["FRONT_DOOR"]``).

Three, each cheap to read on every request:

- **in flight**: gated requests admitted and not yet answered;
- **event-loop lag**: how late a 50 ms timer fires (a loop busy with more
  callbacks than it can run is late for every one of them, requests included);
- **queue delay**: the shortest time an admitted request took in the last
  100 ms (CoDel's signal: when even the fastest request waited that long,
  there is a standing queue, not a burst passing through).

Refusing new work while any of them is over its bound keeps the work already
admitted moving at the speed of an unloaded server, instead of letting every
request wait its turn in a queue that only grows (congestion collapse).
"""

from __future__ import annotations

import asyncio
import math
import time
from enum import StrEnum

from realtime.conf import realtime_settings
from realtime.state import register

SAMPLE_INTERVAL = 0.05
QUEUE_WINDOW = 0.1


class Pressure(StrEnum):
    """Why the process counts as overloaded."""

    IN_FLIGHT = "in_flight"
    LOOP_LAG = "loop_lag"
    QUEUE_DELAY = "queue_delay"


class Overload:
    """This process's load, as the front door reads it (one per process)."""

    def __init__(self) -> None:
        self.in_flight = 0
        self.lag = 0.0
        self.queue_delay = 0.0
        self._window_end = 0.0
        self._window_min = math.inf
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

    def pressure(self) -> Pressure | None:
        """The first bound the process is over, or ``None``: it may take new work."""
        settings = realtime_settings.front_door
        if self.in_flight >= int(settings["MAX_IN_FLIGHT"]):
            return Pressure.IN_FLIGHT
        if self.lag > float(settings["MAX_LOOP_LAG"]):
            return Pressure.LOOP_LAG
        # Without work under way there is no queue, whatever the last window said.
        if self.in_flight and self.queue_delay > float(settings["MAX_QUEUE_DELAY"]):
            return Pressure.QUEUE_DELAY
        return None

    def started(self) -> float:
        """An admitted request begins; returns its start, for :meth:`finished`."""
        self.in_flight += 1
        return time.monotonic()

    def finished(self, started: float) -> None:
        """An admitted request was answered."""
        self.in_flight -= 1
        now = time.monotonic()
        if now >= self._window_end:
            if self._window_min != math.inf:
                self.queue_delay = self._window_min
            self._window_min = math.inf
            self._window_end = now + QUEUE_WINDOW
        self._window_min = min(self._window_min, now - started)

    def clear(self) -> None:
        """Forget the measured delays (not the requests under way, which end on their own)."""
        self.lag = self.queue_delay = 0.0
        self._window_min = math.inf
        self._window_end = 0.0


# One per process; a change of REALTIME forgets its measurements (realtime.state).
overload = register(Overload())
