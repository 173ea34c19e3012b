"""Identities and authorizers (DESIGN §6, PROTOCOL §5).

An authorizer is a small class with one async method. It looks at the
credentials of a request (the authorization object of PROTOCOL §5.2, keys
lowercased) and either abstains (``None``: these are not its credentials),
returns an :class:`Identity`, or raises :class:`~realtime.exceptions.Unauthorized`,
which stops the chain. :func:`authorize` tries the modes allowed for an
operation in order; the first identity wins.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .conf import realtime_settings
from .exceptions import Transport, Unauthorized
from .selectors import api_key_get
from .services import hash_api_key


class Operation(StrEnum):
    CONNECT = "CONNECT"
    PUBLISH = "PUBLISH"
    SUBSCRIBE = "SUBSCRIBE"


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What authorizers and handlers may know about the transport request.

    ``headers`` are lowercased and never include ``cookie`` (PROTOCOL §6.2).
    """

    transport: Transport
    headers: Mapping[str, str] = field(default_factory=dict)
    source_ip: str | None = None
    scope: Mapping[str, Any] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is making a request, as handlers see it (``ctx.identity``, PROTOCOL §5.4)."""

    mode: str
    claims: Mapping[str, Any] | None = None
    api_key_id: int | None = None

    def as_context(self) -> Mapping[str, Any] | None:
        # API-key requests have no identity in AppSync's handler context.
        return self.claims


SERVER_IDENTITY = Identity(mode="SERVER")


class BaseAuthorizer:
    """One auth mode. Subclasses set ``mode`` and implement :meth:`authenticate`."""

    mode: ClassVar[str]

    async def authenticate(
        self,
        credentials: Mapping[str, str],
        *,
        operation: Operation,
        namespace: str | None,
        request: RequestInfo,
    ) -> Identity | None:
        """Return an identity, ``None`` to abstain, or raise ``Unauthorized``."""
        raise NotImplementedError


class ApiKeyAuthorizer(BaseAuthorizer):
    """``x-api-key``: a key created in the admin or by ``realtime_apikey create``."""

    mode = "API_KEY"

    async def authenticate(
        self,
        credentials: Mapping[str, str],
        *,
        operation: Operation,
        namespace: str | None,
        request: RequestInfo,
    ) -> Identity | None:
        raw_key = credentials.get("x-api-key")
        if raw_key is None:
            return None
        info = await api_key_get(raw_key=raw_key)
        # The row was found by the key's SHA-256, so lookup timing says nothing
        # about the key; the digest comparison itself is constant-time as well.
        if info is None or not hmac.compare_digest(hash_api_key(raw_key), info.key_hash):
            raise Unauthorized()
        if not info.is_usable():
            raise Unauthorized()
        return Identity(mode=self.mode, api_key_id=info.id)


authorizer_cache: dict[str, BaseAuthorizer] = {}


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
    *,
    modes: tuple[str, ...] | list[str],
    credentials: Mapping[str, str] | None,
    operation: Operation,
    namespace: str | None,
    request: RequestInfo,
) -> Identity:
    """Authorize one operation with the first allowed mode whose credentials fit.

    Raises:
        Unauthorized: no allowed mode accepted the credentials.
    """
    creds = credentials or {}
    for mode in modes:
        identity = await get_authorizer(mode).authenticate(
            creds, operation=operation, namespace=namespace, request=request
        )
        if identity is not None:
            return identity
    raise Unauthorized()
