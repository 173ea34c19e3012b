"""Server settings for ``test_daphne_door.py``: one WebSocket connect per client an hour.

``DJANGO_SETTINGS_MODULE=tests.e2e.settings_door`` (processes run from the repository root);
everything else as ``config.settings.base``.
"""

from config.settings.base import *  # noqa: F403
from config.settings.base import REALTIME as _BASE_REALTIME

REALTIME = {**_BASE_REALTIME, "CONNECT_RATE_PER_CLIENT": "1/h"}
