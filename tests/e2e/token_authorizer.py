"""The CUSTOM authorizers of the e2e settings (twins of an AppSync Lambda authorizer).

For ``tests.e2e.settings_tokens``, :func:`authorize` allows the opaque token :data:`GOOD_TOKEN`
and denies every other one. Each call is logged as one ``e2e-token-authorizer`` line on the
server's log, which ``test_amplify_tokens`` reads to check that this callable, not another mode,
decided. Nothing is cached (``ttl_override`` 0), so every operation reaches it. For
``tests.e2e.settings_revocation``, :func:`expiring` allows tokens that name their own expiry.
"""

from __future__ import annotations

import logging
from typing import Any

GOOD_TOKEN = "good-token"
HANDLER_CONTEXT = {"user": "amplify"}
LOG_MARKER = "e2e-token-authorizer"

logger = logging.getLogger(__name__)


def authorize(token: str, request_context: dict[str, Any]) -> dict[str, Any]:
    allowed = token == GOOD_TOKEN
    logger.info(
        "%s %s %s %s",
        LOG_MARKER,
        request_context["operation"],
        request_context.get("channel") or "-",
        "allowed" if allowed else "denied",
    )
    return {
        "is_authorized": allowed,
        "handler_context": dict(HANDLER_CONTEXT) if allowed else {},
        "ttl_override": 0,
    }


def expiring(token: str, request_context: dict[str, Any]) -> dict[str, Any]:
    """For ``tests.e2e.settings_revocation``: ``expires-at:<seconds since the epoch>:<name>`` is
    allowed until then (``expires_at``), for every process alike; anything else is denied."""
    kind, _, rest = token.partition(":")
    when, _, name = rest.partition(":")
    if kind != "expires-at" or not name:
        return {"is_authorized": False}
    return {"is_authorized": True, "handler_context": {"name": name}, "expires_at": float(when)}
