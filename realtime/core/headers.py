"""Which request headers handlers and authorizers may see (PROTOCOL §6.2). Pure."""

from __future__ import annotations

from collections.abc import Mapping

# Never exposed to authorizers' request context or handlers (PROTOCOL §6.2).
HIDDEN_HEADERS = frozenset({"cookie"})
# Kept for authorizers (SigV4 may sign it) but never shown to handlers: it
# carries the base64 authorization object (an API key, a JWT).
CREDENTIAL_CARRIER_HEADERS = frozenset({"sec-websocket-protocol"})


def handler_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The request headers handlers and custom authorizers may see."""
    hidden = HIDDEN_HEADERS | CREDENTIAL_CARRIER_HEADERS
    return {name: value for name, value in headers.items() if name not in hidden}
