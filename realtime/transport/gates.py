"""``realtime``'s gates for the front door (:mod:`realtime.transport.frontdoor`).

- :func:`event_gate`: ``POST /event``; its 429 is AppSync's error shape
  (``{"errors":[{"errorType":"LimitExceededException",...}]}``, ``x-amzn-ErrorType``,
  the CORS headers a browser needs to read it);
- :func:`connect_gate`: WebSocket connects to ``/event/realtime``, against
  ``CONNECT_RATE`` (the whole site's, shared through Redis when
  ``LIMITS_REDIS_URL`` is set) and ``CONNECT_RATE_PER_CLIENT``.

``POST /event`` has no request rate of its own: the events it carries are
counted per namespace in the publish path (``INBOUND_EVENT_RATE``), after the
body names the namespace; the front door sheds it when the process is behind.
"""

from __future__ import annotations

import functools
import re

from realtime.conf import realtime_settings
from realtime.exceptions import RateExceeded, Transport
from realtime.transport.frontdoor import Gate, Refusal, json_refusal
from realtime.transport.http import CORS_HEADERS

EVENT_THROTTLED = RateExceeded("Too many requests right now; retry after the indicated delay.")


@functools.cache
def _event_refusal_bytes() -> Refusal:
    # The same bytes every time: a storm is refused thousands of times a second.
    return json_refusal(
        {"errors": [EVENT_THROTTLED.to_error(Transport.HTTP)]},
        [("x-amzn-ErrorType", EVENT_THROTTLED.error_type), *CORS_HEADERS.items()],
    )


def _event_refusal(retry_after: int) -> Refusal:
    return _event_refusal_bytes()


def event_gate(path: str = "/event") -> Gate:
    """The gate of ``POST /event`` mounted at ``path``."""
    return Gate(operation="event", protocol="http", path=re.escape(path), refusal=_event_refusal)


def connect_gate(path: str = "/event/realtime") -> Gate:
    """The gate of WebSocket connects to ``path``."""
    return Gate(
        operation="connect",
        protocol="websocket",
        path=re.escape(path),
        client_rate=lambda: realtime_settings.connect_rate_per_client,
        global_rate=lambda: realtime_settings.connect_rate,
    )


# The connect limits as Connection.open counts them on a site without a front door (same keys).
CONNECT = connect_gate()
