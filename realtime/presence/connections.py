"""This process's open connections, by id, API key, user and session (for server-side control).

A connection registers once ``on_connect`` has admitted it and leaves when it
closes; the index is what :mod:`realtime.presence.control` looks up to close or
unsubscribe connections, and what the admin shows as a key's live connections.

Its state belongs to one event loop, like the hub's.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from realtime.auth import Identity
from realtime.lifecycle import lifecycle
from realtime.presence.service import api_key_key, occupancy


class Controlled(Protocol):
    """What control needs of a connection (:class:`realtime.transport.connection.Connection`)."""

    id: str
    identity: Identity | None

    async def go_away(self, *, within: float) -> None: ...


def session_digest(session_key: str) -> str:
    """What stands for a Django session key in control messages: they cross the channel
    layer, and a session key is a credential."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:32]


class ConnectionIndex:
    """The open connections of this process."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._by_id: dict[str, Controlled] = {}
        self._by_key: dict[int, dict[str, Controlled]] = {}
        self._by_user: dict[str, dict[str, Controlled]] = {}
        self._by_session: dict[str, dict[str, Controlled]] = {}

    def add(self, connection: Controlled) -> None:
        self._by_id[connection.id] = connection
        identity = connection.identity
        if identity is None:
            return
        if identity.api_key_id is not None:
            self._by_key.setdefault(identity.api_key_id, {})[connection.id] = connection
            # Counted like a channel's occupancy, so every process can tell a key's open connections.
            occupancy.local.added(api_key_key(identity.api_key_id), connection)
        if identity.user_id is not None:
            self._by_user.setdefault(str(identity.user_id), {})[connection.id] = connection
        if identity.session_key is not None:
            self._by_session.setdefault(session_digest(identity.session_key), {})[connection.id] = connection

    def remove(self, connection: Controlled) -> None:
        if self._by_id.pop(connection.id, None) is None:
            return
        identity = connection.identity
        if identity is None:
            return
        _discard(self._by_key, identity.api_key_id, connection.id)
        if identity.api_key_id is not None:
            occupancy.local.removed(api_key_key(identity.api_key_id), connection)
        _discard(self._by_user, None if identity.user_id is None else str(identity.user_id), connection.id)
        if identity.session_key is not None:
            _discard(self._by_session, session_digest(identity.session_key), connection.id)

    def get(self, connection_id: str) -> Controlled | None:
        return self._by_id.get(connection_id)

    def all(self) -> list[Controlled]:
        return list(self._by_id.values())

    def with_api_key(self, api_key_id: int) -> list[Controlled]:
        return list(self._by_key.get(api_key_id, {}).values())

    def of_user(self, user_id: Any) -> list[Controlled]:
        return list(self._by_user.get(str(user_id), {}).values())

    def of_session(self, digest: str) -> list[Controlled]:
        """The connections opened with the session whose :func:`session_digest` this is."""
        return list(self._by_session.get(digest, {}).values())

    def __len__(self) -> int:
        return len(self._by_id)


def _discard(index: dict[Any, dict[str, Controlled]], value: Any, connection_id: str) -> None:
    if value is None:
        return
    held = index.get(value)
    if held is not None:
        held.pop(connection_id, None)
        if not held:
            del index[value]


connections = ConnectionIndex()
lifecycle.on_new_loop("connections", connections.reset)
