"""Server-side control of open connections, in every process (PROTOCOL §12).

``realtime.disconnect(...)`` and ``realtime.unsubscribe(...)`` apply to this
process's matching connections at once and reach every other process through
the layer bridge's control group (one layer message, no central process). A
connection is matched by its id, its API key or its user (the USER mode's
Django user, an OIDC ``sub``); the criteria given must all hold.

A disconnected client hears an ``error`` frame naming the reason, then a close
with ``4401`` (access ended) or ``4000`` (maximum age); an unsubscribed one a
``subscribe_error`` per ended subscription. Revoking an API key, deactivating a
user and signing a user out (a session ended, the password changed) do this by
themselves (:mod:`realtime.receivers`); for a password change every process
checks its own sockets' sessions against the store (``verify_sessions``), so the
user's sessions that stay valid keep their sockets.

Deadlines: a connection whose credentials expire (a JWT's ``exp``, an API key's
``expires_at``) is closed then, and every connection once it is
``REALTIME["MAX_CONNECTION_AGE"]`` old; one timer serves the whole process (a
heap of deadlines, entries of closed connections dropped when they come up).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol, TypeVar

from realtime import signals
from realtime.auth import authorizer_cache
from realtime.auth.user import session_signs_in
from realtime.conf import realtime_settings
from realtime.core.paths import parse_channel
from realtime.core.protocol import CloseCode
from realtime.delivery.bridge import bridge
from realtime.exceptions import AccessRevoked, ConnectionTooOld, RealtimeError, TokenExpired
from realtime.handlers import CloseCause
from realtime.lifecycle import lifecycle
from realtime.ops.metrics import metrics
from realtime.presence.connections import Controlled, connections, session_digest

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Endable(Controlled, Protocol):
    """What control does to a connection (:class:`realtime.transport.connection.Connection`)."""

    connected_at: float | None

    def end(self, error: RealtimeError, code: int, cause: CloseCause) -> None: ...

    async def drop_channel(self, channel: str, error: RealtimeError) -> int: ...


Action = Literal["disconnect", "unsubscribe", "verify_sessions"]
CRITERIA = ("connection", "user", "api_key", "identity", "session")


def _matching(message: Mapping[str, Any]) -> list[Endable]:
    """This process's connections that meet every criterion of a control message.

    Criteria: ``connection`` (its id), ``user`` (the identity's user id: a Django
    user's pk in the USER mode, a ``sub`` in OIDC), ``api_key`` (its pk),
    ``identity`` (a part of the identity context), ``session`` (the digest of the
    USER mode's session key), ``mode`` (the auth mode the connection was opened with).
    """
    connection, user, api_key = message.get("connection"), message.get("user"), message.get("api_key")
    identity, session, mode = message.get("identity"), message.get("session"), message.get("mode")
    if connection is not None:
        found = connections.get(connection)
        candidates = [found] if found is not None else []
    elif session is not None:
        candidates = connections.of_session(session)
    elif api_key is not None:
        candidates = connections.with_api_key(int(api_key))
    elif user is not None:
        candidates = connections.of_user(user)
    elif identity is not None:
        candidates = connections.all()  # rare (a host kicking a player): a scan is fine
    else:
        return []
    chosen = []
    for candidate in candidates:
        held = candidate.identity
        if api_key is not None and (held is None or held.api_key_id != int(api_key)):
            continue
        if user is not None and (held is None or str(held.user_id) != str(user)):
            continue
        if mode is not None and (held is None or held.mode != mode):
            continue
        if session is not None and (
            held is None or held.session_key is None or session_digest(held.session_key) != session
        ):
            continue
        if identity is not None and (held is None or not _contains(held.as_context(), identity)):
            continue
        chosen.append(candidate)
    return chosen  # type: ignore[return-value]  # the index holds Connections


def _contains(context: Any, wanted: Any) -> bool:
    """Whether ``context`` holds ``wanted``: every key of a mapping, recursively; else equality."""
    if isinstance(wanted, dict):
        return isinstance(context, Mapping) and all(
            key in context and _contains(context[key], value) for key, value in wanted.items()
        )
    return bool(context == wanted)


async def apply(message: dict[str, Any]) -> int:
    """Apply one control message to this process's connections; how many it touched."""
    found = _matching(message)
    reason = message.get("reason") or None
    action = message.get("action")
    if action == "verify_sessions":
        # Only the sockets whose session no longer signs their user in: the others of
        # the same user (another browser, the session that changed the password) stay.
        found = [c for c in found if not await _session_holds(c)]
        if not found:
            return 0
    if signals.access_revoked.receivers:
        # Apps forget what they cached about these credentials (a token -> player cache, say).
        await signals.access_revoked.asend(signals.SENDER, action=action, criteria=message)
    if action == "unsubscribe":
        channel = message["channel"]
        ended = 0
        for connection in found:
            ended += await connection.drop_channel(channel, AccessRevoked(reason))
        return ended
    # Cached authorizations of the ended access must not admit it again (CUSTOM's answers
    # are cached per token for their TTL).
    forget_cached_authorizations()
    for connection in found:
        connection.end(AccessRevoked(reason), CloseCode.ACCESS_ENDED, CloseCause.REVOKED)
        metrics.ended_by_server(CloseCause.REVOKED)
    return len(found)


async def _session_holds(connection: Endable) -> bool:
    identity = connection.identity
    if identity is None or identity.session_key is None:
        return True  # not a session's socket: nothing to verify
    try:
        return await session_signs_in(identity.session_key, identity.user_id)
    except Exception:
        # The session store cannot tell now: a socket is not closed on a guess.
        logger.warning("could not verify the session of connection %s", connection.id, exc_info=True)
        return True


def forget_cached_authorizations() -> None:
    for authorizer in authorizer_cache.values():
        cache = getattr(authorizer, "result_cache", None)
        if cache is not None:
            cache.clear()


def _received(message: dict[str, Any]) -> None:
    # From the bridge's receive loop: apply without holding it up.
    task = asyncio.get_running_loop().create_task(apply(message))
    _applying.add(task)
    task.add_done_callback(_applying.discard)


_applying: set[asyncio.Task[int]] = set()
bridge.on_control = _received


def _key(value: Any) -> Any:
    """A model instance's primary key, or the value itself."""
    return getattr(value, "pk", value)


async def on_owner_loop(make: Callable[[], Awaitable[T]]) -> T:
    """Run ``make()`` on the loop that serves this process's sockets (or here, if it is this one)."""
    if lifecycle.owned_elsewhere():
        owner = lifecycle.loop
        assert owner is not None

        async def run() -> T:
            return await make()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(run(), owner))
    return await make()


async def control(action: Action, **criteria: Any) -> int:
    """Apply here, then send to every other process; how many matched in this process.

    Raises:
        ValueError: no connection, user or API key was named.
        ServiceUnavailable: the other processes could not be reached (this one applied it).
    """
    message: dict[str, Any] = {"action": action, **{k: v for k, v in criteria.items() if v is not None}}
    if not set(CRITERIA) & message.keys():
        raise ValueError("name a connection, a user, an API key, a session or an identity")
    if "user" in message:
        message["user"] = str(message["user"])

    async def apply_and_send() -> int:
        local = await apply(message)
        await bridge.send_control(message)
        return local

    return await on_owner_loop(apply_and_send)


async def adisconnect(
    *,
    connection: str | None = None,
    user: Any = None,
    api_key: Any = None,
    identity: Mapping[str, Any] | None = None,
    session: str | None = None,
    mode: str | None = None,
    reason: str = "",
) -> int:
    """Close every matching connection, in every process (see the module docstring).

    ``identity`` matches connections whose identity context (what handlers see as
    ``ctx.identity``) holds it: ``{"handlerContext": {"player_id": 7}}``. ``session``
    is a Django session key: the USER-mode connections opened with it (only its
    digest leaves the process). ``mode`` narrows the others to one auth mode.
    """
    criteria = {
        "connection": connection,
        "user": _key(user),
        "api_key": _key(api_key),
        "identity": identity,
        "session": None if session is None else session_digest(session),
        "mode": mode,
    }
    return await control("disconnect", reason=reason, **criteria)


async def averify_sessions(*, user: Any, reason: str = "Signed out") -> int:
    """Close the USER-mode connections of ``user`` whose session no longer signs them in, in
    every process: the password changed (the session auth hash), the session was deleted
    or flushed, the user was deactivated. Each process asks the session store about its own."""
    return await control("verify_sessions", user=_key(user), mode="USER", reason=reason)


async def aunsubscribe(
    *, channel: str, connection: str | None = None, user: Any = None, reason: str = ""
) -> int:
    """End every matching connection's subscriptions to ``channel``, as subscribed (``/ns/a``, ``/ns/*``)."""
    path = parse_channel(channel, allow_wildcard=True).path
    return await control("unsubscribe", channel=path, connection=connection, user=_key(user), reason=reason)


def disconnect_now(action: Callable[..., Awaitable[int]] | None = None, **criteria: Any) -> None:
    """:func:`adisconnect` (or ``action``) from sync code that must not fail (a receiver after a commit).

    A process without an event loop of its own (a management command, the admin
    under WSGI) still reaches the others through the layer.
    """
    from asgiref.sync import async_to_sync

    try:
        async_to_sync(action or adisconnect)(**criteria)
    except Exception as exc:
        # The revocation itself is committed: operations are refused from now on
        # (the key and user caches were cleared); only the open sockets stay up.
        logger.warning("open connections could not be closed (%s): %s", criteria, exc)


# -- deadlines ------------------------------------------------------------------------------


# Heap entries beyond twice the open connections before the closed ones are dropped.
COMPACT_SLACK = 1024


class Deadlines:
    """When this process's connections must close: credentials expiring, maximum age."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._heap: list[tuple[float, int, str, bool]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None

    def watch(self, connection: Endable) -> None:
        """Schedule the close of a newly admitted connection, if anything ends it."""
        max_age = realtime_settings.max_connection_age
        identity = connection.identity
        expires_at = identity.expires_at if identity is not None else None
        if max_age is None and expires_at is None:
            return  # most connections: nothing ends them
        loop = asyncio.get_running_loop()
        now = loop.time()
        candidates: list[tuple[float, bool]] = []
        if max_age is not None:
            candidates.append((now + max_age, False))
        if expires_at is not None:
            candidates.append((now + (expires_at - time.time()), True))
        when, expiry = min(candidates)
        heapq.heappush(self._heap, (when, next(self._order), connection.id, expiry))
        if len(self._heap) > 2 * len(connections) + COMPACT_SLACK:
            self._compact()
        self._arm(loop)

    def _compact(self) -> None:
        # Entries of closed connections would otherwise stay until their deadline
        # (a day, by default): under churn, keep only the open connections'.
        self._heap = [entry for entry in self._heap if connections.get(entry[2]) is not None]
        heapq.heapify(self._heap)

    def __len__(self) -> int:
        return len(self._heap)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._heap:
            return
        first = self._heap[0][0]
        if self._timer is not None and self._timer_at is not None and self._timer_at <= first:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = first
        self._timer = loop.call_at(first, self._fire)

    def _fire(self) -> None:
        loop = asyncio.get_running_loop()
        self._timer = self._timer_at = None
        now = loop.time()
        while self._heap and self._heap[0][0] <= now:
            _, _, connection_id, expiry = heapq.heappop(self._heap)
            found = connections.get(connection_id)
            if found is None:
                continue
            connection: Endable = found  # type: ignore[assignment]  # the index holds Connections
            if expiry:
                connection.end(TokenExpired(), CloseCode.ACCESS_ENDED, CloseCause.REVOKED)
                metrics.ended_by_server(CloseCause.REVOKED)
            else:
                connection.end(ConnectionTooOld(), CloseCode.MAX_AGE, CloseCause.MAX_AGE)
                metrics.ended_by_server(CloseCause.MAX_AGE)
        self._arm(loop)


deadlines = Deadlines()
lifecycle.on_new_loop("deadlines", deadlines.reset)
