"""The site's settings with a short process expiry for occupancy (``test_presence``).

A killed process stops counting once its liveness key expires: 3 s here instead of 15.
"""

from config.settings.base import *  # noqa: F403
from config.settings.base import REALTIME as _BASE_REALTIME

OCCUPANCY_PROCESS_TTL = 3.0

REALTIME = {**_BASE_REALTIME, "OCCUPANCY_PROCESS_TTL": OCCUPANCY_PROCESS_TTL}
