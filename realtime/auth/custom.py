"""``CUSTOM``: a dotted-path callable, the twin of AppSync's Lambda authorizer (PROTOCOL §5.5).

``REALTIME["CUSTOM_AUTHORIZER"]["HANDLER"]`` names a callable, sync or async::

    def authorize(token: str, request_context: dict) -> dict:
        # request_context: {"operation": "CONNECT" | "PUBLISH" | "SUBSCRIBE",
        #                   "namespace", "channel", "requestHeaders", "sourceIp"}
        return {"is_authorized": True, "handler_context": {"user": "u1"}, "ttl_override": 60}

``token`` is the ``authorization`` credential exactly as sent (opaque; at most
2048 characters). The result is a dict; camelCase keys (``isAuthorized``,
``handlerContext``, ``ttlOverride``) work as well:

- ``is_authorized`` (bool, required);
- ``handler_context`` (a JSON object, optional): handlers see it as
  ``ctx.identity["handlerContext"]``;
- ``ttl_override`` (seconds, optional): how long this answer is reused instead
  of ``CACHE_TTL``; ``0`` disables caching. As in AppSync, a cache lifetime only:
  an open connection outlives it;
- ``expires_at`` (seconds since the epoch, like a JWT's ``exp``) or ``expires_in``
  (seconds from the answer), optional, not both: when the credentials end. A
  connection opened with this answer is closed then (``Token expired``, PROTOCOL
  §12), the answer is not reused past it, and an answer already past it refuses.

Answers, denials included, are cached per token, operation, namespace and
channel. Sync callables run in a worker thread (not the ORM's shared one) and
every call is bounded by ``TIMEOUT`` seconds. A callable that times out, raises
or returns something else is logged (never with the token) and the request is
refused; such failures are not cached.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from channels.db import database_sync_to_async
from django.utils.module_loading import import_string

from realtime.auth import AuthRequest, BaseAuthorizer, Identity
from realtime.conf import realtime_settings
from realtime.core.headers import handler_headers
from realtime.exceptions import TokenExpired, Unauthorized
from realtime.store.cache import TTLCache

logger = logging.getLogger(__name__)

SIGV4_PREFIX = "AWS4-HMAC-SHA256"
# AppSync's limits for Lambda authorizers.
MAX_TOKEN_LENGTH = 2048
MAX_HANDLER_CONTEXT_BYTES = 5 * 1024 * 1024
# Cached answers kept per process.
CACHE_MAX_ENTRIES = 10_000


class MalformedResult(Exception):
    pass


def _pick(result: Mapping[str, Any], snake: str, camel: str) -> Any:
    return result[snake] if snake in result else result.get(camel)


@dataclass(frozen=True, slots=True)
class Answer:
    """A callable's answer, checked."""

    is_authorized: bool
    handler_context: dict[str, Any]
    # Seconds the answer is reused.
    ttl: float
    # When the credentials end (seconds since the epoch), if the answer says.
    expires_at: float | None = None


def _seconds(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise MalformedResult(f"{name} must be a number of seconds, 0 or more")
    return float(value)


def parse_expiry(result: Mapping[str, Any], now: float) -> float | None:
    """When the answer's credentials end: ``expires_at``, or ``now + expires_in``, or ``None``."""
    expires_at = _pick(result, "expires_at", "expiresAt")
    expires_in = _pick(result, "expires_in", "expiresIn")
    if expires_at is not None and expires_in is not None:
        raise MalformedResult("give expires_at or expires_in, not both")
    if expires_at is not None:
        return _seconds(expires_at, "expires_at")
    if expires_in is not None:
        return now + _seconds(expires_in, "expires_in")
    return None


def parse_result(result: Any, default_ttl: float, now: float | None = None) -> Answer:
    """The checked answer of a callable (``now``: seconds since the epoch, for ``expires_in``).

    Raises:
        MalformedResult: the answer is not the documented shape.
    """
    if not isinstance(result, Mapping):
        raise MalformedResult(f"returned {type(result).__name__}, not a dict")
    is_authorized = _pick(result, "is_authorized", "isAuthorized")
    if not isinstance(is_authorized, bool):
        raise MalformedResult("is_authorized must be a bool")
    handler_context = _pick(result, "handler_context", "handlerContext")
    if handler_context is None:
        handler_context = {}
    if not isinstance(handler_context, Mapping):
        raise MalformedResult("handler_context must be a dict")
    handler_context = dict(handler_context)
    try:
        size = len(json.dumps(handler_context, ensure_ascii=False).encode())
    except (TypeError, ValueError, RecursionError):
        raise MalformedResult("handler_context must be JSON-serializable") from None
    if size > MAX_HANDLER_CONTEXT_BYTES:
        raise MalformedResult("handler_context is larger than 5 MB")
    ttl = _pick(result, "ttl_override", "ttlOverride")
    ttl = default_ttl if ttl is None else _seconds(ttl, "ttl_override")
    expires_at = parse_expiry(result, time.time() if now is None else now)
    return Answer(is_authorized, handler_context, float(ttl), expires_at)


def request_context(auth: AuthRequest) -> dict[str, Any]:
    """What the callable learns about the request besides the token."""
    return {
        "operation": auth.operation.value,
        "namespace": auth.namespace,
        "channel": auth.channel,
        "requestHeaders": handler_headers(auth.request.headers),
        "sourceIp": auth.request.source_ip,
    }


def _cache_key(token: str, auth: AuthRequest) -> str:
    parts = [token, auth.operation.value, auth.namespace, auth.channel]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _is_async(fn: Callable[..., Any]) -> bool:
    # A coroutine function, or an object whose class defines ``async def __call__``.
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class CustomAuthorizer(BaseAuthorizer):
    """The ``CUSTOM`` mode. Each instance keeps the answers it was given.

    :func:`realtime.auth.get_authorizer` holds one instance per process and
    drops it when ``REALTIME`` changes (another callable, another default TTL).

    Args:
        max_cached: answers kept at most; beyond, the cache starts over.
    """

    mode = "CUSTOM"

    def __init__(self, max_cached: int = CACHE_MAX_ENTRIES) -> None:
        # An answer: the identity, or None for a denial.
        self.result_cache: TTLCache[Identity | None] = TTLCache(max_entries=max_cached)

    async def authenticate(self, credentials: Mapping[str, str], auth: AuthRequest) -> Identity | None:
        token = credentials.get("authorization")
        if not token or token.startswith(SIGV4_PREFIX):
            return None
        where = f"{auth.operation.value} {auth.channel or ''}".rstrip()
        if len(token) > MAX_TOKEN_LENGTH:
            logger.info("CUSTOM: %s refused: the token is longer than %d characters", where, MAX_TOKEN_LENGTH)
            raise Unauthorized()
        key = _cache_key(token, auth)
        hit, cached = self.result_cache.get(key)
        if hit:
            if cached is None:
                raise Unauthorized()
            return cached

        config = realtime_settings.custom_authorizer
        path = config["HANDLER"]
        if not path:
            logger.error("CUSTOM: REALTIME['CUSTOM_AUTHORIZER']['HANDLER'] is not set; refusing %s", where)
            raise Unauthorized()
        try:
            fn = import_string(path) if isinstance(path, str) else path
        except ImportError:
            logger.exception("CUSTOM: authorizer %r cannot be imported; refusing %s", path, where)
            raise Unauthorized() from None
        name = path if isinstance(path, str) else repr(path)

        timeout = float(config["TIMEOUT"])
        try:
            result = await asyncio.wait_for(self._call(fn, token, request_context(auth)), timeout)
            answer = parse_result(result, float(config["CACHE_TTL"]))
        except TimeoutError:
            logger.error("CUSTOM: authorizer %s did not answer %s within %ss", name, where, timeout)
            raise Unauthorized() from None
        except MalformedResult as error:
            logger.error("CUSTOM: authorizer %s answered %s wrongly: %s", name, where, error)
            raise Unauthorized() from None
        except Exception:
            logger.exception("CUSTOM: authorizer %s failed on %s", name, where)
            raise Unauthorized() from None

        ttl = answer.ttl
        if not answer.is_authorized:
            self.result_cache.set(key, None, ttl)
            logger.debug("CUSTOM: authorizer %s denied %s", name, where)
            raise Unauthorized()
        if answer.expires_at is not None:
            left = answer.expires_at - time.time()
            if left <= 0:
                logger.debug("CUSTOM: authorizer %s allowed %s with credentials already expired", name, where)
                raise TokenExpired()
            ttl = min(ttl, left)  # a cached answer never outlives the credentials
        identity = Identity(
            mode=self.mode,
            context={"handlerContext": answer.handler_context},
            ttl=ttl,
            expires_at=answer.expires_at,
        )
        self.result_cache.set(key, identity, ttl)
        return identity

    @staticmethod
    async def _call(fn: Callable[..., Any], token: str, context: dict[str, Any]) -> Any:
        if _is_async(fn):
            result = fn(token, context)
        else:
            # Not the thread-sensitive executor: a slow authorizer must not block
            # the thread every ORM call of the process runs in.
            result = await database_sync_to_async(fn, thread_sensitive=False)(token, context)
        if inspect.isawaitable(result):
            result = await result
        return result
