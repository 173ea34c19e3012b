"""Server settings for the slow-consumer end-to-end test: a small outbound buffer.

``DJANGO_SETTINGS_MODULE=tests.e2e.settings_small_outbox`` (daphne runs from the repository root).
Everything else comes from the environment, as with ``config.settings.base``.
"""

from config.settings.base import *  # noqa: F403
from config.settings.base import REALTIME as _BASE_REALTIME

# Frames queued for one connection before it is closed as too slow (DESIGN §5).
OUTBOUND_BUFFER_SIZE = 50

# One publisher floods the channel (hundreds of publishes at once): the outbox is
# under test here, not the per-connection publish rate (25/s burst 100).
REALTIME = {
    **_BASE_REALTIME,
    "OUTBOUND_BUFFER_SIZE": OUTBOUND_BUFFER_SIZE,
    "PUBLISH_RATE_PER_CONNECTION": None,
}
