"""``OIDC``: a JWT verified against an issuer's JWKS (Cognito-style ID and access tokens).

The token travels as ``authorization`` (PROTOCOL §5.2), with or without a
``Bearer `` prefix. Credentials that are not a JWT (none at all, SigV4, an
opaque token) are not this mode's: it abstains, so ``CUSTOM`` can take opaque
tokens when both modes are configured. A JWT is verified in full or refused:

- signature, with a key of the issuer's JWKS picked by ``kid``, under one of
  ``ALGORITHMS`` (``none`` never);
- ``iss`` equal to ``ISSUER``; ``exp`` required; ``exp``, ``nbf`` and ``iat``
  checked with ``LEEWAY`` seconds of clock skew;
- the client: ``aud`` (ID tokens) or ``client_id`` (Cognito access tokens) in
  ``AUDIENCES`` when that list is set, and matching ``CLIENT_ID_REGEX`` (AppSync's
  ``appIdClientRegex``, matched in full) when set;
- ``token_use``, when present, in ``TOKEN_USE``.

The JWKS is fetched in a worker thread, never on the event loop, and cached for
``JWKS_CACHE_TTL`` seconds. A token signed with an unknown ``kid`` (the issuer
rotated its keys) triggers one early refetch, at most every
:data:`MIN_REFETCH_INTERVAL` seconds. When the endpoint cannot be reached, the
request is refused and a warning logged; keys fetched earlier stay in use until
a refetch succeeds.

Handlers see Cognito's identity shape (PROTOCOL §5.4): ``sub``, ``issuer``,
``username``, ``groups``, ``claims``, ``sourceIp`` and ``defaultAuthStrategy``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any

from django.core.exceptions import ImproperlyConfigured

try:
    import jwt
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImproperlyConfigured("The OIDC auth mode needs PyJWT: pip install 'pyjwt[crypto]'.") from error

from realtime.auth import AuthRequest, BaseAuthorizer, Identity
from realtime.conf import realtime_settings
from realtime.exceptions import Unauthorized

logger = logging.getLogger(__name__)

# A SigV4 Authorization header belongs to the IAM mode.
SIGV4_PREFIX = "AWS4-HMAC-SHA256"
BEARER_PREFIX = "bearer "
# Seconds between two JWKS fetches that are not due to the cache TTL: an unknown
# kid, or a retry after a failed fetch. Tokens with made-up kids cannot make
# the server hammer the issuer.
MIN_REFETCH_INTERVAL = 10.0
# Seconds a JWKS request may take, and the largest JWKS document read.
JWKS_FETCH_TIMEOUT = 5.0
JWKS_MAX_BYTES = 1024 * 1024

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")


def bearer_token(credentials: Mapping[str, str]) -> str | None:
    """The token of an ``authorization`` credential, without a ``Bearer `` prefix.

    ``None`` when there is none, or when it is a SigV4 signature (IAM's).
    """
    value = credentials.get("authorization")
    if not value:
        return None
    value = value.strip()
    if value.startswith(SIGV4_PREFIX):
        return None
    if value[: len(BEARER_PREFIX)].lower() == BEARER_PREFIX:
        value = value[len(BEARER_PREFIX) :].strip()
    return value or None


def _b64url_json(segment: str) -> Any:
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    return json.loads(raw)


def unverified_header(token: str) -> dict[str, Any] | None:
    """The JOSE header of a JWT-shaped token, or ``None`` if the token is not a JWT.

    JWT-shaped: three dot-separated base64url parts (the signature may be empty,
    as with ``alg: none``, which is then refused rather than passed on), the
    first a JSON object with an ``alg``.
    """
    parts = token.split(".")
    if len(parts) != 3 or not _SEGMENT.fullmatch(parts[0]) or not _SEGMENT.fullmatch(parts[1]):
        return None
    if parts[2] and not _SEGMENT.fullmatch(parts[2]):
        return None
    try:
        header = _b64url_json(parts[0])
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        return None
    return header


class JwksFetchError(Exception):
    pass


def _fetch_jwks(url: str) -> dict[str, dict[str, Any]]:
    """GET a JWKS document (blocking: run in a worker thread); signing keys by ``kid``."""
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise JwksFetchError("the JWKS URL must be http(s)")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=JWKS_FETCH_TIMEOUT) as response:
            body = response.read(JWKS_MAX_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as error:
        raise JwksFetchError(str(error)) from None
    if len(body) > JWKS_MAX_BYTES:
        raise JwksFetchError("the document is too large")
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise JwksFetchError("the document is not JSON") from None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise JwksFetchError("the document has no 'keys' array")
    by_kid: dict[str, dict[str, Any]] = {}
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            continue
        if key.get("use", "sig") != "sig":
            continue
        kid = key.get("kid")
        # Keys without a kid are kept under "" and only used for tokens without one.
        by_kid[kid if isinstance(kid, str) else ""] = key
    return by_kid


class JwksCache:
    """The keys of one JWKS URL, cached for a TTL, refetched early on unknown ``kid`` s.

    Concurrent requests that need a fetch share one; a fetch never raises into
    its waiters (the outcome is recorded in the cache's state).
    """

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._url: str | None = None
        self._keys: dict[str, dict[str, Any]] = {}
        # PyJWK objects built so far, by (kid, algorithm).
        self._parsed: dict[tuple[str, str], jwt.PyJWK] = {}
        self._fetched_at: float | None = None
        self._last_attempt = -float("inf")
        self._last_ok = False
        self._inflight: asyncio.Task[None] | None = None

    async def get_key(self, *, url: str, kid: str, algorithm: str, ttl: float) -> jwt.PyJWK:
        """The verification key for ``kid`` under ``algorithm``.

        Raises:
            Unauthorized: the JWKS cannot be had, or holds no such usable key.
        """
        if url != self._url:
            self.clear()
            self._url = url
        now = time.monotonic()
        stale = self._fetched_at is None or now - self._fetched_at >= ttl
        if stale and (self._last_ok or self._may_refetch(now)):
            await self._refresh(url)
        elif self._inflight is not None and not self._inflight.done():
            await self._join()
        if self._fetched_at is None:
            raise Unauthorized()
        if kid not in self._keys and self._may_refetch(time.monotonic()):
            logger.info("OIDC: unknown key id %r, refetching the JWKS", kid)
            await self._refresh(url)
        jwk = self._keys.get(kid)
        if jwk is None:
            logger.info("OIDC: no signing key with id %r in the JWKS", kid)
            raise Unauthorized()
        return self._parse(kid, jwk, algorithm)

    def _may_refetch(self, now: float) -> bool:
        return now - self._last_attempt >= MIN_REFETCH_INTERVAL

    def _parse(self, kid: str, jwk: dict[str, Any], algorithm: str) -> jwt.PyJWK:
        parsed = self._parsed.get((kid, algorithm))
        if parsed is None:
            declared = jwk.get("alg")
            if declared is not None and declared != algorithm:
                logger.info("OIDC: key %r is for %s, the token says %s", kid, declared, algorithm)
                raise Unauthorized()
            try:
                parsed = jwt.PyJWK(jwk, algorithm)
            except jwt.PyJWTError as error:
                logger.info("OIDC: key %r cannot verify %s: %s", kid, algorithm, error)
                raise Unauthorized() from None
            self._parsed[(kid, algorithm)] = parsed
        return parsed

    async def _refresh(self, url: str) -> None:
        if self._inflight is None or self._inflight.done() or not self._same_loop(self._inflight):
            self._last_attempt = time.monotonic()
            self._inflight = asyncio.get_running_loop().create_task(self._fetch(url))
        await self._join()

    async def _join(self) -> None:
        task = self._inflight
        if task is not None and self._same_loop(task):
            # A cancelled waiter must not cancel the fetch the others wait for.
            await asyncio.shield(task)

    @staticmethod
    def _same_loop(task: asyncio.Task[None]) -> bool:
        return task.get_loop() is asyncio.get_running_loop()

    async def _fetch(self, url: str) -> None:
        try:
            keys = await asyncio.to_thread(_fetch_jwks, url)
        except JwksFetchError as error:
            self._last_ok = False
            logger.warning("OIDC: cannot fetch the JWKS at %s: %s", url, error)
            return
        except Exception:
            self._last_ok = False
            logger.exception("OIDC: fetching the JWKS at %s failed unexpectedly", url)
            return
        if url != self._url:  # the settings changed while we fetched
            return
        self._keys = keys
        self._parsed = {}
        self._fetched_at = time.monotonic()
        self._last_ok = True


def _audiences(claims: Mapping[str, Any]) -> list[str]:
    """The client ids a token was issued to: ``aud`` (ID tokens), ``client_id`` (access tokens)."""
    values: list[str] = []
    aud = claims.get("aud")
    if isinstance(aud, str):
        values.append(aud)
    elif isinstance(aud, list):
        values.extend(item for item in aud if isinstance(item, str))
    client_id = claims.get("client_id")
    if isinstance(client_id, str):
        values.append(client_id)
    return values


def _client_allowed(claims: Mapping[str, Any], audiences: list[str], regex: str | None) -> bool:
    if not audiences and not regex:
        return True
    pattern = re.compile(regex) if regex else None
    return any(
        (not audiences or value in audiences) and (pattern is None or pattern.fullmatch(value))
        for value in _audiences(claims)
    )


class OidcAuthorizer(BaseAuthorizer):
    """The ``OIDC`` mode. Each instance keeps the JWKS it fetched.

    :func:`realtime.auth.get_authorizer` holds one instance per process and
    drops it when ``REALTIME`` changes, so the keys go with the settings they
    were fetched under.
    """

    mode = "OIDC"

    def __init__(self) -> None:
        self.jwks_cache = JwksCache()

    async def authenticate(self, credentials: Mapping[str, str], auth: AuthRequest) -> Identity | None:
        token = bearer_token(credentials)
        if token is None:
            return None
        header = unverified_header(token)
        if header is None:
            return None
        claims = await self.verify(token, header)
        sub = claims.get("sub")
        username = claims.get("cognito:username") or claims.get("username") or sub
        groups = claims.get("cognito:groups")
        source_ip = auth.request.source_ip
        exp = claims.get("exp")
        return Identity(
            mode=self.mode,
            expires_at=float(exp) if isinstance(exp, int | float) else None,
            context={
                "sub": sub,
                "issuer": claims.get("iss"),
                "username": username,
                "groups": list(groups) if isinstance(groups, list) else [],
                "claims": claims,
                "sourceIp": [source_ip] if source_ip else [],
                "defaultAuthStrategy": "ALLOW",
            },
            user_id=sub,
        )

    async def verify(self, token: str, header: Mapping[str, Any]) -> dict[str, Any]:
        """The claims of a verified token.

        Raises:
            Unauthorized: the token is not valid for this issuer and these clients.
        """
        config = realtime_settings.oidc
        issuer = config["ISSUER"]
        if not issuer:
            logger.error("OIDC: REALTIME['OIDC']['ISSUER'] is not set; refusing every token")
            raise Unauthorized()
        issuer = str(issuer)
        url = config["JWKS_URL"] or issuer.rstrip("/") + "/.well-known/jwks.json"
        allowed = [alg for alg in config["ALGORITHMS"] if str(alg).lower() != "none"]
        algorithm = header["alg"]
        if algorithm not in allowed:
            logger.info("OIDC: token refused: algorithm %r is not allowed", algorithm)
            raise Unauthorized()
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            logger.info("OIDC: token refused: its kid is not a string")
            raise Unauthorized()
        key = await self.jwks_cache.get_key(
            url=url, kid=kid or "", algorithm=algorithm, ttl=float(config["JWKS_CACHE_TTL"])
        )
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=allowed,
                issuer=issuer,
                leeway=float(config["LEEWAY"]),
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except jwt.PyJWTError as error:
            logger.info("OIDC: token refused: %s", error)
            raise Unauthorized() from None
        token_use = claims.get("token_use")
        if token_use is not None and token_use not in config["TOKEN_USE"]:
            logger.info("OIDC: token refused: token_use %r is not allowed", token_use)
            raise Unauthorized()
        if not _client_allowed(claims, list(config["AUDIENCES"] or []), config["CLIENT_ID_REGEX"]):
            logger.info("OIDC: token refused: client %r is not allowed", _audiences(claims))
            raise Unauthorized()
        return claims
