"""THE subscribe path: everything a subscription needs before it goes live (DESIGN §4).

The ladder is fixed: namespace → the connection's subscribe rate → subscribe
authorization → ``on_subscribe`` →
layer membership (:meth:`~realtime.delivery.bridge.LayerBridge.join`) → the hub's index.
The connection checks the id and the per-connection limit before any of it
(:mod:`realtime.core.session`) and answers ``subscribe_success`` after it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from realtime import handlers
from realtime.auth import AuthRequest, Identity, Operation, RequestInfo, authorize
from realtime.auth.limits import connection_take
from realtime.conf import realtime_settings
from realtime.core import protocol
from realtime.core.history import Position, offset_of, recover, tail
from realtime.core.paths import ChannelPath, presence_key
from realtime.core.rates import Gcra
from realtime.delivery.bridge import bridge
from realtime.delivery.history import HistoryStore, history, resume_token
from realtime.delivery.hub import LiveBuffer, LocalSubscription, already_has, hub
from realtime.delivery.outbox import Outbox
from realtime.exceptions import HandlerError, InvalidChannel, NamespaceNotFound
from realtime.handlers import HandlerKind
from realtime.lifecycle import lifecycle
from realtime.ops.metrics import metrics
from realtime.presence.service import occupancy
from realtime.store.selectors import namespace_get

logger = logging.getLogger(__name__)


async def subscribe_authorize(
    *,
    channel: ChannelPath,
    raw_channel: str,
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    connection_rates: Gcra | None = None,
) -> Identity:
    """Namespace, rate, authorization and ``on_subscribe`` for one subscribe; the subscriber's identity.

    A presence channel (PROTOCOL §12) is authorized exactly as a subscribe to
    the channel it watches: handlers see that channel; authorizers see the
    channel as the client sent it (a SigV4 signature covers that string).

    Raises:
        InvalidChannel, NamespaceNotFound, RateExceeded, Unauthorized, HandlerRejected, HandlerError.
    """
    if channel.presence and not realtime_settings.occupancy:
        raise InvalidChannel()
    namespace = await namespace_get(name=channel.namespace)
    if namespace is None:
        raise NamespaceNotFound()
    if connection_rates is not None:
        connection_take(connection_rates, "subscribe", namespace)
    auth = AuthRequest(
        operation=Operation.SUBSCRIBE, request=request, namespace=namespace.name, channel=raw_channel
    )
    modes = namespace.subscribe_auth_modes or realtime_settings.default_subscribe_auth_modes
    identity = await authorize(modes=modes, credentials=credentials, auth=auth)
    handler = handlers.resolve(HandlerKind.SUBSCRIBE, namespace.name, namespace.subscribe_handler)
    if handler is not None:
        await handlers.call(
            handler,
            handlers.context_for(Operation.SUBSCRIBE, namespace.name, channel.watched, identity, request),
        )
    return identity


async def subscription_start(subscription: LocalSubscription, member: tuple[str, str] | None = None) -> None:
    """Make a subscription live: events published once this returns reach it.

    Raises:
        ServiceUnavailable: the channel layer refused this process's membership.
    """
    # Presence channels travel through no layer group: each process serves its
    # own watchers from the occupancy store.
    if not presence_key(subscription.key):
        await bridge.join(subscription.key)
    hub.add(subscription)
    occupancy.started(subscription, member)


async def presence_member(
    *, channel: ChannelPath, identity: Identity, request: RequestInfo, connection_id: str
) -> tuple[str, str] | None:
    """What a subscription shows on its channel's presence channel, where the namespace lists
    members: ``(connection id, member JSON)``; ``None`` elsewhere.

    The member is ``{"connection": <id>}`` plus what the namespace's ``on_presence``
    handler returns (PROTOCOL §12).

    Raises:
        HandlerRejected, Unauthorized, HandlerError: from the handler, or a result
            that is not a mapping of JSON values.
    """
    if channel.presence or not realtime_settings.occupancy:
        return None
    namespace = await namespace_get(name=channel.namespace)
    if namespace is None or not namespace.presence:
        return None
    member: dict[str, Any] = {"connection": connection_id}
    handler = handlers.resolve(HandlerKind.PRESENCE, namespace.name)
    if handler is not None:
        result = await handlers.call(
            handler, handlers.context_for(Operation.SUBSCRIBE, namespace.name, channel, identity, request)
        )
        if result is not None and not isinstance(result, Mapping):
            raise HandlerError("on_presence must return a mapping or None")
        member = {**(result or {}), "connection": connection_id}
    try:
        return connection_id, json.dumps(member, separators=(",", ":"), ensure_ascii=False)
    except (TypeError, ValueError):
        raise HandlerError("on_presence returned a value that is not JSON") from None


def subscription_stop(subscription: LocalSubscription) -> None:
    """No more events for this subscription (its group is left lazily, see the bridge)."""
    _resumable.pop(subscription, None)
    hub.remove(subscription)
    occupancy.stopped(subscription)


def connection_stop(outbox: Outbox, subscriptions: Iterable[LocalSubscription]) -> None:
    """A connection is gone: no more events for it or any of its subscriptions."""
    held = list(subscriptions)
    # Where each history subscription was, kept before the hub forgets the connection.
    subscriptions_closed(held)
    hub.disconnect(outbox, held)
    for subscription in held:
        occupancy.stopped(subscription)


# -- history and recovery (PROTOCOL §12, "History") ------------------------------------


@dataclass(slots=True)
class Started:
    """A live subscription: what its ``subscribe_success`` adds, and what goes out before live events."""

    subscription: LocalSubscription
    extension: dict[str, object] | None = None
    replay: Sequence[tuple[int, str]] = ()
    outbox: Outbox | None = None
    buffer: LiveBuffer | None = None
    # The offset the subscriber already has (a recovery's ``since``): held live
    # events at or before it are not sent again.
    seen: int = 0
    # The epoch of the stream the recovery read: the fence holds back late copies of it only.
    epoch: str | None = None

    def acknowledge(self, subscription_id: str, outbox: Outbox) -> None:
        """Send ``subscribe_success``, the replay, then the live events held meanwhile, each once.

        Runs without awaiting: nothing can come between the replay and live delivery.
        A publication the subscriber has now (from the replay, or before its ``since``)
        that reaches this process live only later is not sent again (:meth:`Hub.fence`).
        """
        outbox.offer(protocol.subscribe_success(subscription_id, self.extension))
        prefix = self.subscription.prefix
        last = self.seen
        for offset, event in self.replay:
            outbox.offer(prefix + tail(event, offset) + protocol.DATA_FRAME_SUFFIX)
            last = offset
        if self.buffer is not None and self.outbox is not None:
            self.subscription.outbox = self.outbox
            for frame, epoch in self.buffer.frames:
                held = offset_of(frame)
                # Published before the subscribe: the replay had it (or the client did). The
                # fence's rule: an event of another epoch (the stream restarted) is new.
                if held is None or not already_has(last, self.epoch, held, epoch):
                    outbox.offer(frame)
            self.buffer = None
            hub.fence(self.subscription, last, self.epoch)


# Live history subscriptions of this process: where each resumes from after its connection closes.
_resumable: dict[LocalSubscription, tuple[str, Position]] = {}
_remembering: set[asyncio.Task[None]] = set()
lifecycle.on_new_loop("subscribing.resumable", _resumable.clear)


def principal_of(identity: Identity) -> str:
    """Who subscribed, stably across connections: the mode and what names the caller in it."""
    context = identity.context or {}
    subject = context.get("sub") if isinstance(context, Mapping) else None
    if subject is None:
        subject = json.dumps(context, sort_keys=True, default=str)
    return f"{identity.mode}\n{identity.api_key_id}\n{identity.user_id}\n{subject}"


async def subscription_start_with_history(
    subscription: LocalSubscription,
    *,
    channel: ChannelPath,
    subscription_id: str,
    identity: Identity,
    since: Position | None,
    member: tuple[str, str] | None = None,
) -> Started:
    """:func:`subscription_start`, plus the replay of what the subscriber missed.

    In a namespace without history this is :func:`subscription_start` and the
    answer is today's (``since`` only adds ``recovered: false``). With history,
    the subscriber resumes from ``since`` or, without one, from the position its
    previous connection left under the same subscription id (an unmodified
    Amplify client re-subscribing after a reconnect), if any. Live events that
    arrive while the history is read are held and sent after the replay.

    Raises:
        ServiceUnavailable: the channel layer refused this process's membership.
    """
    namespace = await namespace_get(name=channel.namespace)
    if namespace is None or not namespace.history_size:
        await subscription_start(subscription, member)
        return Started(subscription, None if since is None else {"recovered": False})
    store = history()
    token = resume_token(principal_of(identity), subscription_id, subscription.key)
    explicit = since is not None
    if since is None:
        since = await _recall(store, token)
    if since is None:
        return await _start_fresh(subscription, store, token, member)

    outbox = subscription.outbox
    buffer = LiveBuffer()
    # The hub only ever offers frames to it (LiveBuffer has Outbox.offer's signature).
    subscription.outbox = cast(Outbox, buffer)
    try:
        await subscription_start(subscription, member)
    except BaseException:
        subscription.outbox = outbox
        raise
    limit = realtime_settings.history_recover_limit
    try:
        stream = await store.read(subscription.key, since.offset, limit + 1)
    except Exception as exc:
        logger.warning("realtime history could not be read for %s: %s", channel.path, exc)
        return Started(subscription, {"recovered": False} if explicit else None, (), outbox, buffer)
    recovery = recover(since, stream, limit)
    metrics.recovered(channel.namespace, recovery.recovered, len(recovery.replay))
    _resumable[subscription] = (token, recovery.position)
    extension: dict[str, object] = {**recovery.position.as_dict(), "recovered": recovery.recovered}
    # A live event can reach this process after the client saw it through another one
    # (that process's layer loop ran ahead of this one's): held, it is dropped here.
    seen = since.offset if recovery.recovered else 0
    return Started(subscription, extension, recovery.replay, outbox, buffer, seen, stream.epoch)


async def _start_fresh(
    subscription: LocalSubscription, store: HistoryStore, token: str, member: tuple[str, str] | None
) -> Started:
    """A history subscription with nothing to recover: its position, then live events.

    The position is read before the subscription goes live, so every publication after it
    is either delivered or, published before the layer took this process in, recoverable
    from it later; one at or before it was published before the subscribe.
    """
    try:
        stream = await store.read(subscription.key, None, 0)
    except Exception as exc:
        logger.warning("realtime history could not be read for %s: %s", subscription.key, exc)
        await subscription_start(subscription, member)
        return Started(subscription)
    await subscription_start(subscription, member)
    position = Position(stream.top, stream.epoch)
    _resumable[subscription] = (token, position)
    return Started(subscription, dict(position.as_dict()))


async def _recall(store: HistoryStore, token: str) -> Position | None:
    try:
        return await store.recall(token)
    except Exception as exc:
        logger.warning("realtime history could not recall a resume position: %s", exc)
        return None


def subscriptions_closed(subscriptions: Iterable[LocalSubscription]) -> None:
    """A connection closed: keep where each of its history subscriptions was, for a while.

    Call before the hub forgets the connection: a subscription resumes after the
    last event this process delivered for its key (or where it started).
    """
    kept = _positions(subscriptions)
    if not kept:
        return
    task = asyncio.get_running_loop().create_task(_remember(history(), kept))
    _remembering.add(task)
    task.add_done_callback(_remembering.discard)


async def connection_leaving(outbox: Outbox, subscriptions: Iterable[LocalSubscription]) -> None:
    """A connection this process is about to close so its client reconnects elsewhere.

    Its history subscriptions' positions are stored before this returns, and
    the hub delivers nothing more to it: a client that reconnects to another
    process the moment it hears the close resumes exactly after the last event
    it was sent (a position kept when the close is noticed could come too late).
    """
    held = list(subscriptions)
    kept = _positions(held)
    hub.disconnect(outbox, held)
    if kept:
        await _remember(history(), kept)


def _positions(subscriptions: Iterable[LocalSubscription]) -> list[tuple[str, Position]]:
    kept = []
    for subscription in subscriptions:
        entry = _resumable.pop(subscription, None)
        if entry is None:
            continue
        token, position = entry
        last = hub.last_delivered.get(subscription.key)
        offset = offset_of(last) if last is not None else None
        if offset is not None and offset > position.offset:
            position = Position(offset, position.epoch)
        kept.append((token, position))
    return kept


async def _remember(store: HistoryStore, kept: list[tuple[str, Position]]) -> None:
    window = realtime_settings.history_resume_window
    try:
        for token, position in kept:
            await store.remember(token, position, window)
    except Exception as exc:
        logger.warning("realtime history could not keep resume positions: %s", exc)
