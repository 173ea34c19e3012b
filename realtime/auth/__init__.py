"""Identities and the authorization chain (DESIGN §6, PROTOCOL §5).

An authorizer is a small class with one async method. It looks at the
credentials of a request (the authorization object of PROTOCOL §5.2, keys
lowercased) and either abstains (``None``: these are not its credentials),
returns an :class:`Identity`, or raises :class:`~realtime.exceptions.Unauthorized`,
which stops the chain. :func:`authorize` tries the modes allowed for an
operation in order; the first identity wins. The modes themselves are this
package's modules: ``api_key``, ``user`` (the Django session), ``oidc`` (JWT
against a JWKS), ``custom`` (the Lambda authorizer's twin) and ``iam`` (SigV4);
``limits`` holds the process's connect and failed-authorization limiters.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from realtime.auth.limits import auth_failure_limiter
from realtime.conf import realtime_settings
from realtime.exceptions import LimitExceeded, Transport, Unauthorized
from realtime.state import register


class Operation(StrEnum):
    CONNECT = "CONNECT"
    PUBLISH = "PUBLISH"
    SUBSCRIBE = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What authorizers and handlers may know about the transport request.

    ``headers`` are lowercased and never include ``cookie`` (PROTOCOL §6.2);
    ``scope`` is the ASGI scope (session, user and cookies for the USER mode).
    """

    transport: Transport
    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str | None = None
    scope: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)
    # For the USER mode only; never shown to handlers.
    cookies: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    http_request: Any = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """One operation to authorize.

    ``channel`` and ``events`` are exactly as the client sent them (SigV4
    signs them, PROTOCOL §5.3); ``http_body`` is the raw body of an HTTP publish.
    """

    operation: Operation
    request: RequestInfo
    namespace: str | None = None
    channel: str | None = None
    events: Sequence[Any] | None = None
    http_body: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is making a request; handlers see :meth:`as_context` as ``ctx.identity``."""

    mode: str
    # What handlers see (PROTOCOL §5.4): None for API keys.
    context: Mapping[str, Any] | None = None
    api_key_id: int | None = None
    user_id: Any = None
    # Seconds this identity may be reused for the same credentials (CUSTOM's ttl).
    ttl: float | None = None
    # When the credentials stop being valid (seconds since the epoch): a JWT's
    # exp, an API key's expiry. An open connection is closed then (PROTOCOL §12).
    expires_at: float | None = None
    # The USER mode's Django session key: what server-side control matches a sign-out
    # against (PROTOCOL §12). A credential: never shown to handlers, never printed.
    session_key: str | None = field(default=None, repr=False, compare=False)

    def as_context(self) -> Mapping[str, Any] | None:
        return self.context


SERVER_IDENTITY = Identity(mode="SERVER")


class BaseAuthorizer:
    """One auth mode. Subclasses set ``mode`` and implement :meth:`authenticate`."""

    mode: ClassVar[str]

    async def authenticate(self, credentials: Mapping[str, str], auth: AuthRequest) -> Identity | None:
        """Return an identity, ``None`` to abstain, or raise ``Unauthorized``."""
        raise NotImplementedError


# Mode -> this process's authorizer; the instances own their caches, so
# resetting this (realtime.state) resets those too.
authorizer_cache: dict[str, BaseAuthorizer] = register({})


def get_authorizer(mode: str) -> BaseAuthorizer:
    """The authorizer instance for ``mode``, built once from ``REALTIME["AUTHORIZERS"]``."""
    authorizer = authorizer_cache.get(mode)
    if authorizer is None:
        path = realtime_settings.authorizers.get(mode)
        if path is None:
            raise ImproperlyConfigured(f"No authorizer is configured for auth mode {mode!r}.")
        authorizer = authorizer_cache[mode] = import_string(path)()
    return authorizer


async def authorize(
    *, modes: Sequence[str], credentials: Mapping[str, str] | None, auth: AuthRequest
) -> Identity:
    """Authorize one operation with the first allowed mode whose credentials fit.

    Raises:
        Unauthorized: no allowed mode accepted the credentials.
    """
    creds = credentials or {}
    client = auth.request.source_ip
    limiter = auth_failure_limiter.current()
    now = time.monotonic()
    if client is not None and limiter is not None and limiter.blocked(client, now):
        raise LimitExceeded("Too many failed authorizations from this address; retry later.")
    try:
        for mode in modes:
            identity = await get_authorizer(mode).authenticate(creds, auth)
            if identity is not None:
                return identity
        raise Unauthorized()
    except Unauthorized:
        if client is not None and limiter is not None:
            limiter.failed(client, now)
        raise
