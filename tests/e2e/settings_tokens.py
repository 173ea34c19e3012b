"""The site's settings with token auth modes only, for ``test_amplify_tokens``.

Every operation (connect, publish, subscribe) accepts ``OIDC`` then ``CUSTOM``, and nothing
else: no API key, no session. A JWT is OIDC's (verified against ``RT_E2E_OIDC_ISSUER``'s JWKS, or
refused); any other ``authorization`` token goes to :func:`tests.e2e.token_authorizer.authorize`.
"""

from __future__ import annotations

import os

from config.settings.base import *  # noqa: F403

TOKEN_AUTH_MODES = ["OIDC", "CUSTOM"]

REALTIME = {
    "CONNECTION_AUTH_MODES": TOKEN_AUTH_MODES,
    "DEFAULT_PUBLISH_AUTH_MODES": TOKEN_AUTH_MODES,
    "DEFAULT_SUBSCRIBE_AUTH_MODES": TOKEN_AUTH_MODES,
    "CUSTOM_AUTHORIZER": {"HANDLER": "tests.e2e.token_authorizer.authorize", "TIMEOUT": 5.0},
    "OIDC": {
        # The test's local issuer; its JWKS is ISSUER + "/.well-known/jwks.json".
        "ISSUER": os.environ.get("RT_E2E_OIDC_ISSUER") or None,
        "AUDIENCES": [os.environ.get("RT_E2E_OIDC_AUDIENCE", "amplify-e2e")],
        "LEEWAY": 0,
    },
}
