"""``API_KEY``: ``x-api-key``, a key created in the admin or by ``realtime_apikey create``."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from realtime.auth import AuthRequest, BaseAuthorizer, Identity
from realtime.exceptions import Unauthorized
from realtime.store.selectors import api_key_get
from realtime.store.services import hash_api_key


class ApiKeyAuthorizer(BaseAuthorizer):
    mode = "API_KEY"

    async def authenticate(self, credentials: Mapping[str, str], auth: AuthRequest) -> Identity | None:
        raw_key = credentials.get("x-api-key")
        if raw_key is None:
            return None
        info = await api_key_get(raw_key=raw_key)
        # The row was found by the key's SHA-256, so lookup timing says nothing
        # about the key; the digest comparison itself is constant-time as well.
        if info is None or not hmac.compare_digest(hash_api_key(raw_key), info.key_hash):
            raise Unauthorized()
        # Expiry and revocation are checked on every operation, so an open
        # connection loses access at its next operation (within the cache TTL).
        if not info.is_usable():
            raise Unauthorized()
        expires_at = info.expires_at.timestamp() if info.expires_at is not None else None
        return Identity(mode=self.mode, api_key_id=info.id, expires_at=expires_at)
