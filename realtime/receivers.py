"""Keep this process's caches honest when rows or settings change; start its services on first use."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.signals import request_started, setting_changed
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

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


@receiver(post_save, sender=settings.AUTH_USER_MODEL, dispatch_uid="realtime.user_deactivated")
def _user_deactivated(*, instance: Any, **kwargs: Any) -> None:
    if getattr(instance, "is_active", True) is False:
        _disconnect_on_commit(user=instance.pk, reason="User deactivated")


def _disconnect_on_commit(**criteria: Any) -> None:
    def run() -> None:
        from realtime.presence.control import disconnect_now

        disconnect_now(**criteria)

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
