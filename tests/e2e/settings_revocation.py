"""The site's settings for ``test_revocation_processes``: every auth mode a socket can be revoked in.

Connections accept API keys, Django sessions (USER), OIDC tokens from the test's local issuer
(``RT_E2E_OIDC_ISSUER``) and CUSTOM tokens that name their own expiry
(:func:`tests.e2e.token_authorizer.expiring`); ``RT_E2E_MAX_AGE`` sets ``MAX_CONNECTION_AGE``;
a killed process stops counting after 3 s, as in ``settings_presence``.
"""

from __future__ import annotations

import os

from config.settings.base import *  # noqa: F403
from config.settings.base import REALTIME as _BASE_REALTIME

MODES = ["API_KEY", "USER", "OIDC", "CUSTOM"]

REALTIME = {
    **_BASE_REALTIME,
    "CONNECTION_AUTH_MODES": MODES,
    "OCCUPANCY_PROCESS_TTL": 3.0,
    "CUSTOM_AUTHORIZER": {"HANDLER": "tests.e2e.token_authorizer.expiring", "TIMEOUT": 5.0},
    "OIDC": {
        "ISSUER": os.environ.get("RT_E2E_OIDC_ISSUER") or None,
        "AUDIENCES": [os.environ.get("RT_E2E_OIDC_AUDIENCE", "revocation-e2e")],
        "LEEWAY": 0,
    },
}
if os.environ.get("RT_E2E_MAX_AGE"):
    REALTIME["MAX_CONNECTION_AGE"] = float(os.environ["RT_E2E_MAX_AGE"])
