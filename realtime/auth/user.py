"""``USER``: the signed-in Django user, from the session cookie (DESIGN §6).

The natural mode for pages of the same site: the browser sends its session
cookie with the WebSocket handshake and with ``POST /event``. Because cookies
travel with cross-site requests too:

- a cookie-authenticated WebSocket must come from an allowed ``Origin``: the
  request's own host or ``REALTIME["USER_ALLOWED_ORIGINS"]`` (cross-site
  WebSocket hijacking is refused);
- a cookie-authenticated HTTP publish must pass Django's CSRF check.

Per namespace, ``publish_groups`` / ``subscribe_groups`` name the Django groups
allowed; empty lists allow any active signed-in user. Superusers always pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib import auth as django_auth
from django.utils.crypto import constant_time_compare

from realtime.auth import AuthRequest, BaseAuthorizer, Identity, Operation
from realtime.auth.csrf import csrf_failure
from realtime.conf import realtime_settings
from realtime.exceptions import Transport, Unauthorized
from realtime.store.selectors import namespace_get


class UserAuthorizer(BaseAuthorizer):
    mode = "USER"

    async def authenticate(self, credentials: Mapping[str, str], auth: AuthRequest) -> Identity | None:
        request = auth.request
        session_key = request.cookies.get(settings.SESSION_COOKIE_NAME)
        if not session_key:
            return None
        user = await _session_user(session_key)
        if user is None or not user.is_active:
            return None
        if request.transport is Transport.WEBSOCKET and not _origin_allowed(request.headers):
            raise Unauthorized()
        # The view is csrf_exempt (realtime.transport.endpoints): a cookie is trusted only with its token.
        if request.transport is Transport.HTTP and request.http_request is not None:
            if csrf_failure(request.http_request) is not None:
                raise Unauthorized("CSRF check failed.")
        if auth.operation is not Operation.CONNECT and auth.namespace is not None:
            await _check_groups(user, auth)
        context = {
            "username": user.get_username(),
            "sub": str(user.pk),
            "groups": await _group_names(user),
            "sourceIp": [request.source_ip] if request.source_ip else [],
        }
        return Identity(mode=self.mode, context=context, user_id=user.pk, session_key=session_key)


async def _session_user(session_key: str) -> Any:
    """The user a session key belongs to, or ``None`` (Django's own session → user logic)."""
    engine = import_module(settings.SESSION_ENGINE)
    holder = SimpleNamespace(session=engine.SessionStore(session_key))
    user = await django_auth.aget_user(holder)  # type: ignore[arg-type]  # it reads only request.session
    return user if user.is_authenticated else None


async def session_signs_in(session_key: str, user_id: Any) -> bool:
    """Whether ``session_key`` still signs in the active user ``user_id``, as Django's next
    request with that cookie would decide (:func:`django.contrib.auth.aget_user`).

    Unlike ``aget_user``, it changes nothing: a session whose auth hash no longer
    matches (the password changed) is reported, not flushed; the request that
    owns the session does that, as Django always has.
    """
    engine = import_module(settings.SESSION_ENGINE)
    session = engine.SessionStore(session_key)
    held_id = await session.aget(django_auth.SESSION_KEY)
    backend_path = await session.aget(django_auth.BACKEND_SESSION_KEY)
    if (
        held_id is None
        or str(held_id) != str(user_id)
        or backend_path not in settings.AUTHENTICATION_BACKENDS
    ):
        return False  # signed out, deleted, expired, or another user's now
    user = await django_auth.load_backend(backend_path).aget_user(held_id)
    if user is None or not user.is_active:
        return False
    if not hasattr(user, "get_session_auth_hash"):
        return True
    held_hash = await session.aget(django_auth.HASH_SESSION_KEY)
    if not held_hash:
        return False
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    return any(constant_time_compare(held_hash, expected) for expected in hashes)


def _origin_allowed(headers: Mapping[str, str]) -> bool:
    origin = headers.get("origin")
    if not origin:
        # Browsers always send Origin on WebSockets; non-browser clients have
        # no ambient cookies to abuse.
        return True
    if origin in realtime_settings.user_allowed_origins:
        return True
    return urlsplit(origin).netloc.lower() == headers.get("host", "").lower()


async def _check_groups(user: Any, auth: AuthRequest) -> None:
    if user.is_superuser:
        return
    namespace = await namespace_get(name=auth.namespace or "")
    if namespace is None:
        raise Unauthorized()
    allowed = namespace.publish_groups if auth.operation is Operation.PUBLISH else namespace.subscribe_groups
    if allowed and not set(allowed) & set(await _group_names(user)):
        raise Unauthorized()


@database_sync_to_async
def _group_names(user: Any) -> list[str]:
    return sorted(user.groups.values_list("name", flat=True))
