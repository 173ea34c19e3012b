"""The site's settings with a recovery bound of 100 publications, for the history e2e tests."""

from __future__ import annotations

from config.settings.base import *  # noqa: F403

REALTIME = {**REALTIME, "HISTORY_RECOVER_LIMIT": 100}  # noqa: F405
