"""Reads on the hot path, cached per process for a few seconds.

A namespace or API key is looked up for every operation; the database sees at
most one query per name (or key) per TTL per process. Saving or deleting a row
clears this process's entry at once (:mod:`realtime.receivers`); other
processes see the change within the TTL. A change of ``REALTIME`` clears them
all (:mod:`realtime.state`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from channels.db import database_sync_to_async
from django.utils import timezone

from realtime.conf import realtime_settings
from realtime.models import ApiKey, IamCredential, Namespace
from realtime.state import register
from realtime.store.cache import TTLCache
from realtime.store.services import hash_api_key


@dataclass(frozen=True, slots=True)
class NamespaceConfig:
    """What the publish and subscribe paths need to know about a namespace."""

    name: str
    publish_auth_modes: tuple[str, ...]
    subscribe_auth_modes: tuple[str, ...]
    publish_handler: str
    subscribe_handler: str
    publish_groups: tuple[str, ...] = ()
    subscribe_groups: tuple[str, ...] = ()
    # Presence channels list members (PROTOCOL §12), at most this many.
    presence: bool = False
    presence_max_members: int = 100
    # The namespace's own rates ("" for the REALTIME default; realtime.auth.limits).
    publish_rate_per_connection: str = ""
    subscribe_rate_per_connection: str = ""
    inbound_event_rate: str = ""
    # Publications kept per subscription key, and for how many seconds; 0: no history.
    history_size: int = 0
    history_ttl: int = 300


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    id: int
    prefix: str
    key_hash: str
    expires_at: datetime | None
    revoked: bool

    def is_usable(self) -> bool:
        if self.revoked:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


namespace_cache: TTLCache[NamespaceConfig | None] = register(TTLCache())
api_key_cache: TTLCache[ApiKeyInfo | None] = register(TTLCache())


def _namespace_load(name: str) -> NamespaceConfig | None:
    row = Namespace.objects.filter(name=name).first()
    if row is None:
        return None
    return NamespaceConfig(
        name=row.name,
        publish_auth_modes=tuple(row.publish_auth_modes or ()),
        subscribe_auth_modes=tuple(row.subscribe_auth_modes or ()),
        publish_handler=row.publish_handler,
        subscribe_handler=row.subscribe_handler,
        publish_groups=tuple(row.publish_groups or ()),
        subscribe_groups=tuple(row.subscribe_groups or ()),
        presence=row.presence,
        presence_max_members=row.presence_max_members,
        publish_rate_per_connection=row.publish_rate_per_connection,
        subscribe_rate_per_connection=row.subscribe_rate_per_connection,
        inbound_event_rate=row.inbound_event_rate,
        history_size=row.history_size,
        history_ttl=row.history_ttl,
    )


async def namespace_get(*, name: str) -> NamespaceConfig | None:
    """The namespace called ``name``, or ``None``; unknown names are cached too."""
    return await namespace_cache.get_or_load(
        name, lambda: database_sync_to_async(_namespace_load)(name), realtime_settings.namespace_cache_ttl
    )


def namespace_names() -> list[str]:
    """Every namespace's name, sorted (the console's hint; not on the hot path, not cached)."""
    return list(Namespace.objects.order_by("name").values_list("name", flat=True))


def _api_key_load(key_hash: str) -> ApiKeyInfo | None:
    row = ApiKey.objects.filter(key_hash=key_hash).first()
    if row is None:
        return None
    return ApiKeyInfo(
        id=row.pk,
        prefix=row.prefix,
        key_hash=row.key_hash,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
    )


async def api_key_get(*, raw_key: str) -> ApiKeyInfo | None:
    """The key matching ``raw_key`` (usable or not), or ``None``."""
    key_hash = hash_api_key(raw_key)
    return await api_key_cache.get_or_load(
        key_hash, lambda: database_sync_to_async(_api_key_load)(key_hash), realtime_settings.api_key_cache_ttl
    )


# -- IAM credentials (the IAM auth mode) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class IamCredentialInfo:
    """An access key as the SigV4 verifier needs it; ``secret_access_key`` is never logged."""

    id: int
    access_key_id: str
    secret_access_key: str = field(repr=False)
    revoked: bool
    can_connect: bool
    publish_namespaces: tuple[str, ...]
    subscribe_namespaces: tuple[str, ...]
    account_id: str
    username: str
    user_arn: str


iam_credential_cache: TTLCache[IamCredentialInfo | None] = register(TTLCache())


def _iam_credential_load(access_key_id: str) -> IamCredentialInfo | None:
    row = IamCredential.objects.filter(access_key_id=access_key_id).first()
    if row is None:
        return None
    return IamCredentialInfo(
        id=row.pk,
        access_key_id=row.access_key_id,
        secret_access_key=row.secret_access_key,
        revoked=not row.is_usable(),
        can_connect=row.can_connect,
        publish_namespaces=tuple(row.publish_namespaces or ()),
        subscribe_namespaces=tuple(row.subscribe_namespaces or ()),
        account_id=row.effective_account_id,
        username=row.effective_username,
        user_arn=row.effective_user_arn,
    )


async def iam_credential_get(*, access_key_id: str) -> IamCredentialInfo | None:
    """The credential with this access key id (revoked or not), or ``None``.

    Cached like API keys, for ``API_KEY_CACHE_TTL`` seconds; unknown ids too.
    """
    hit, info = iam_credential_cache.get(access_key_id)
    if not hit:
        info = await database_sync_to_async(_iam_credential_load)(access_key_id)
        iam_credential_cache.set(access_key_id, info, realtime_settings.api_key_cache_ttl)
    return info
