"""Keep this process's caches honest when rows or settings change; start its services on first use."""

from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_out
from django.core.signals import request_started, setting_changed
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone

from realtime.lifecycle import lifecycle
from realtime.models import ApiKey, IamCredential, Namespace
from realtime.state import reset_all
from realtime.store.selectors import api_key_cache, iam_credential_cache, namespace_cache


@receiver([post_save, post_delete], sender=Namespace, dispatch_uid="realtime.namespace_cache")
def _namespace_changed(**kwargs: Any) -> None:
    namespace_cache.clear()


@receiver([post_save, post_delete], sender=ApiKey, dispatch_uid="realtime.api_key_cache")
def _api_key_changed(**kwargs: Any) -> None:
    api_key_cache.clear()


@receiver(post_save, sender=ApiKey, dispatch_uid="realtime.api_key_revoked")
def _api_key_revoked(*, instance: ApiKey, **kwargs: Any) -> None:
    # Open sockets opened with the key close too, in every process, once the revocation commits.
    if instance.revoked_at is not None:
        _disconnect_on_commit(api_key=instance.pk, reason="API key revoked")


@receiver(post_delete, sender=ApiKey, dispatch_uid="realtime.api_key_deleted")
def _api_key_deleted(*, instance: ApiKey, **kwargs: Any) -> None:
    _disconnect_on_commit(api_key=instance.pk, reason="API key deleted")


# What signs a Django user out of their open USER-mode sockets (PROTOCOL §12, docs/AUTH.md):
# - deactivation: every one of them;
# - any other save that may change the session auth hash (a new password): each process
#   asks the session store whether each of the user's sockets' sessions still signs them
#   in, and closes those that do not (``verify_sessions``);
# - ``logout()`` (``user_logged_out``) and a deleted session row (signing out everywhere
#   by deleting the user's sessions, ``cycle_key``): the sockets opened with that session.
# Fields a save may name without touching who the session signs in.
_SESSION_NEUTRAL_FIELDS = frozenset({"last_login"})


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="realtime.user_deactivated")
def _user_changed(*, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if getattr(instance, "is_active", True) is False:
        _disconnect_on_commit(user=instance.pk, mode="USER", reason="User deactivated")
        return
    if created or (update_fields is not None and set(update_fields) <= _SESSION_NEUTRAL_FIELDS):
        return  # a login stamps last_login: nothing any session depends on changed
    _disconnect_on_commit(action="verify_sessions", user=instance.pk, reason="Signed out")


@receiver(user_logged_out, dispatch_uid="realtime.user_logged_out")
def _user_logged_out(*, request: Any = None, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        _disconnect_on_commit(session=session_key, mode="USER", reason="Signed out")


def session_deleted(*, instance: Any, **kwargs: Any) -> None:
    """A database session row went (connected by :func:`connect_session_receivers`)."""
    expire_date = getattr(instance, "expire_date", None)
    if expire_date is not None and expire_date <= timezone.now():
        return  # clearsessions sweeping expired rows: nothing signed in with them now
    _disconnect_on_commit(session=instance.session_key, mode="USER", reason="Signed out")


def connect_session_receivers() -> None:
    """Watch the session model of a database-backed ``SESSION_ENGINE`` (``db``, ``cached_db``).

    Only that model: a ``post_delete`` receiver for every model would cost every bulk
    delete of the site its fast path. Other engines have no rows; ``user_logged_out``
    and the verification after a user's save cover them.
    """
    try:
        store = import_module(settings.SESSION_ENGINE).SessionStore
        model = store.get_model_class()
    except Exception:  # not a database engine (cache, signed cookies), or no sessions app
        return
    post_delete.connect(session_deleted, sender=model, dispatch_uid="realtime.session_deleted")


def _disconnect_on_commit(action: str = "disconnect", **criteria: Any) -> None:
    def run() -> None:
        from realtime.presence.control import adisconnect, averify_sessions, disconnect_now

        disconnect_now(averify_sessions if action == "verify_sessions" else adisconnect, **criteria)

    transaction.on_commit(run)


@receiver([post_save, post_delete], sender=IamCredential, dispatch_uid="realtime.iam_credential_cache")
def _iam_credential_changed(**kwargs: Any) -> None:
    iam_credential_cache.clear()


@receiver(setting_changed, dispatch_uid="realtime.settings")
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    # What was cached, built or counted under the old settings no longer holds.
    if setting == "REALTIME":
        reset_all()


@receiver(request_started, dispatch_uid="realtime.lifecycle")
async def _start_services(*, scope: Any = None, **kwargs: Any) -> None:
    # An ASGI request (Django sends ``scope``) runs on the server's event loop: the
    # process's background services start with its first request, or its first
    # WebSocket (realtime.transport.connection). A WSGI request has no loop to run them on.
    if scope is not None:
        lifecycle.ensure_started()
