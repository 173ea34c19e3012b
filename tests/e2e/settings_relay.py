"""Server settings for the relay's end-to-end test (``test_relay.py``): one extra URL.

``DJANGO_SETTINGS_MODULE=tests.e2e.settings_relay`` (daphne runs from the repository root).
Everything else comes from the environment, as with ``config.settings.base`` (``REDIS_URL``,
``REALTIME_RELAY``).
"""

from config.settings.base import *  # noqa: F403

ROOT_URLCONF = "tests.e2e.urls_relay"
