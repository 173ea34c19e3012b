"""Keep this process's lookup caches honest when rows change."""

from __future__ import annotations

from typing import Any

from django.core.signals import setting_changed
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import ApiKey, Namespace
from .selectors import api_key_cache, namespace_cache


@receiver([post_save, post_delete], sender=Namespace, dispatch_uid="realtime.namespace_cache")
def _namespace_changed(**kwargs: Any) -> None:
    namespace_cache.clear()


@receiver([post_save, post_delete], sender=ApiKey, dispatch_uid="realtime.api_key_cache")
def _api_key_changed(**kwargs: Any) -> None:
    api_key_cache.clear()


@receiver(setting_changed, dispatch_uid="realtime.settings")
def _settings_changed(*, setting: str, **kwargs: Any) -> None:
    if setting == "REALTIME":
        from .auth import authorizer_cache

        authorizer_cache.clear()
        namespace_cache.clear()
        api_key_cache.clear()
