"""CUSTOM authorizer callables for the tests; the token says what to answer.

- ``allow:<user>``: allowed, camelCase keys, ``handlerContext {"user": <user>}``.
- ``snake:<user>``: allowed, snake_case keys.
- ``nocache:<user>``: allowed with ``ttlOverride`` 0.
- ``ttl:<seconds>``: allowed with that ``ttl_override``.
- ``expires:<seconds>:<user>``: allowed, cached 300 s, the credentials ending in ``<seconds>``.
- ``expired:<user>``: allowed, the credentials ended a minute ago (``expires_at``).
- ``owner:<user>``: connect allowed; publish/subscribe only on ``/default/<user>...``.
- ``deny``: refused (``isAuthorized`` false).
- ``boom``: raises.
- ``slow``: sleeps :data:`SLOW_SECONDS`, then allows.
- ``garbage``: answers something that is not a dict.
- ``not-bool``: ``isAuthorized`` is not a bool.

Every call is recorded in :data:`calls` as ``(token, request_context)``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

SLOW_SECONDS = 0.3

calls: list[tuple[str, dict[str, Any]]] = []


def _answer(token: str, request_context: dict[str, Any]) -> Any:
    kind, _, arg = token.partition(":")
    if kind == "allow":
        return {"isAuthorized": True, "handlerContext": {"user": arg}}
    if kind == "snake":
        return {"is_authorized": True, "handler_context": {"user": arg}}
    if kind == "nocache":
        return {"isAuthorized": True, "handlerContext": {"user": arg}, "ttlOverride": 0}
    if kind == "ttl":
        return {"is_authorized": True, "ttl_override": float(arg)}
    if kind == "expires":
        seconds, _, user = arg.partition(":")
        return {
            "isAuthorized": True,
            "handlerContext": {"user": user},
            "ttlOverride": 300,
            "expiresIn": float(seconds),
        }
    if kind == "expired":
        return {"is_authorized": True, "handler_context": {"user": arg}, "expires_at": time.time() - 60}
    if kind == "owner":
        channel = request_context["channel"] or ""
        allowed = request_context["operation"] == "CONNECT" or channel.startswith(f"/default/{arg}")
        return {"isAuthorized": allowed, "handlerContext": {"user": arg}}
    if kind == "deny":
        return {"isAuthorized": False}
    if kind == "boom":
        raise RuntimeError("the authorizer has a bug")
    if kind == "garbage":
        return "yes"
    if kind == "not-bool":
        return {"isAuthorized": "true"}
    raise AssertionError(f"unexpected test token kind {kind!r}")


def authorize(token: str, request_context: dict[str, Any]) -> Any:
    calls.append((token, request_context))
    if token == "slow":
        time.sleep(SLOW_SECONDS)
        return {"isAuthorized": True}
    return _answer(token, request_context)


async def authorize_async(token: str, request_context: dict[str, Any]) -> Any:
    calls.append((token, request_context))
    if token == "slow":
        await asyncio.sleep(SLOW_SECONDS)
        return {"isAuthorized": True}
    return _answer(token, request_context)
