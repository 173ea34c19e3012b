"""This process's limiters of connections and failed authorizations (their rates: REALTIME settings).

They are per process on purpose: they protect the process that would otherwise
do the work, with no round trip to a shared store on the hot path. With N
processes the site-wide allowance is N times the setting. A change of
``REALTIME`` resets them (:mod:`realtime.state`).
"""

from __future__ import annotations

import time

from realtime.conf import realtime_settings
from realtime.core.rates import FailureLimiter, SettingLimiter, TokenBucket
from realtime.state import register


class ConnectLimiter(SettingLimiter[TokenBucket]):
    """This process's budget of new WebSocket connections (``REALTIME["CONNECT_RATE"]``)."""

    __slots__ = ()

    def allow(self) -> bool:
        """Take one connection from the budget; ``False`` when it is spent (or ``True``: no limit)."""
        bucket = self.current()
        return bucket is None or bucket.allow(time.monotonic())


# This process's two limiters; a change of REALTIME resets them (realtime.state).
connect_limiter = register(ConnectLimiter(lambda: realtime_settings.connect_rate, TokenBucket.from_rate))
# Failed authorizations per client address (``REALTIME["AUTH_FAILURE_RATE"]``).
auth_failure_limiter = register(
    SettingLimiter(lambda: realtime_settings.auth_failure_rate, FailureLimiter.from_rate)
)
