"""Writes: API keys, IAM credentials and namespaces. Keyword-only, typed, named ``<entity>_<action>``."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from realtime.models import ApiKey, IamCredential, Namespace

API_KEY_PREFIX = "rt-"
_VISIBLE_CHARS = 8


def hash_api_key(raw_key: str) -> str:
    """SHA-256 of a key. Keys are 192 random bits, so a fast hash is safe here."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def apikey_create(*, description: str = "", expires_in_days: float | None = None) -> tuple[ApiKey, str]:
    """Create an API key; returns the row and the key, which is never stored."""
    raw_key = API_KEY_PREFIX + secrets.token_urlsafe(24)
    expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days is not None else None
    api_key = ApiKey.objects.create(
        prefix=raw_key[: len(API_KEY_PREFIX) + _VISIBLE_CHARS],
        key_hash=hash_api_key(raw_key),
        description=description,
        expires_at=expires_at,
    )
    return api_key, raw_key


@transaction.atomic
def apikey_revoke(*, prefix: str) -> int:
    """Revoke every live key whose visible prefix is ``prefix``; returns how many."""
    keys = list(ApiKey.objects.select_for_update().filter(prefix=prefix, revoked_at__isnull=True))
    now = timezone.now()
    for api_key in keys:
        api_key.revoked_at = now
        api_key.save(update_fields=["revoked_at"])
    return len(keys)


def namespace_create(
    *,
    name: str,
    description: str = "",
    publish_auth_modes: list[str] | None = None,
    subscribe_auth_modes: list[str] | None = None,
    history_size: int = 0,
    history_ttl: int = 300,
) -> Namespace:
    """Create a namespace after full model validation (``history_size`` 0: no history).

    Raises:
        ValidationError: a bad name, a taken name, or an unknown auth mode.
    """
    namespace = Namespace(
        name=name,
        description=description,
        publish_auth_modes=publish_auth_modes or [],
        subscribe_auth_modes=subscribe_auth_modes or [],
        history_size=history_size,
        history_ttl=history_ttl,
    )
    namespace.full_clean()
    namespace.save()
    return namespace


def namespace_delete(*, name: str) -> None:
    """Raises ``Namespace.DoesNotExist`` for an unknown name."""
    Namespace.objects.get(name=name).delete()


# -- IAM credentials -------------------------------------------------------------

IAM_ACCESS_KEY_PREFIX = "AKIA"
_IAM_ACCESS_KEY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_IAM_SECRET_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _random_string(alphabet: str, length: int) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def iamcredential_create(
    *,
    description: str = "",
    can_connect: bool = True,
    publish_namespaces: list[str] | None = None,
    subscribe_namespaces: list[str] | None = None,
    account_id: str = "",
    username: str = "",
    user_arn: str = "",
) -> IamCredential:
    """Create an access key pair for the IAM mode, after full model validation.

    The id is ``AKIA`` + 16 characters and the secret 40 characters, shaped
    like AWS's own, so AWS SDKs and signers take them as they are. The secret
    is stored (SigV4 verification needs it) and is ``secret_access_key`` of the
    returned row.

    Raises:
        ValidationError: a bad namespace name or account id.
    """
    credential = IamCredential(
        access_key_id=IAM_ACCESS_KEY_PREFIX + _random_string(_IAM_ACCESS_KEY_ALPHABET, 16),
        secret_access_key=_random_string(_IAM_SECRET_ALPHABET, 40),
        description=description,
        can_connect=can_connect,
        publish_namespaces=list(publish_namespaces or []),
        subscribe_namespaces=list(subscribe_namespaces or []),
        account_id=account_id,
        username=username,
        user_arn=user_arn,
    )
    credential.full_clean()
    credential.save()
    return credential


@transaction.atomic
def iamcredential_revoke(*, access_key_id: str) -> int:
    """Revoke the live credential with this access key id; returns 1, or 0 if none."""
    credentials = list(
        IamCredential.objects.select_for_update().filter(access_key_id=access_key_id, revoked_at__isnull=True)
    )
    now = timezone.now()
    for credential in credentials:
        credential.revoked_at = now
        credential.save(update_fields=["revoked_at"])
    return len(credentials)


__all__ = [
    "ValidationError",
    "apikey_create",
    "apikey_revoke",
    "hash_api_key",
    "iamcredential_create",
    "iamcredential_revoke",
    "namespace_create",
    "namespace_delete",
]
