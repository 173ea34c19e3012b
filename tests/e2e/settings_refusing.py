"""The site's settings plus an app whose ``on_connect`` refuses every connection (``test_presence``)."""

from config.settings.base import *  # noqa: F403
from config.settings.base import INSTALLED_APPS as _BASE_APPS

INSTALLED_APPS = [*_BASE_APPS, "tests.e2e.refusing"]
