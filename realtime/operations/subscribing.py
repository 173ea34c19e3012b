"""THE subscribe path: everything a subscription needs before it goes live (DESIGN §4).

The ladder is fixed: namespace → the connection's subscribe rate → subscribe
authorization → ``on_subscribe`` →
layer membership (:meth:`~realtime.delivery.bridge.LayerBridge.join`) → the hub's index.
The connection checks the id and the per-connection limit before any of it
(:mod:`realtime.core.session`) and answers ``subscribe_success`` after it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from realtime import handlers
from realtime.auth import AuthRequest, Identity, Operation, RequestInfo, authorize
from realtime.auth.limits import connection_take
from realtime.conf import realtime_settings
from realtime.core.paths import ChannelPath, presence_key
from realtime.core.rates import Gcra
from realtime.delivery.bridge import bridge
from realtime.delivery.hub import LocalSubscription, hub
from realtime.delivery.outbox import Outbox
from realtime.exceptions import HandlerError, InvalidChannel, NamespaceNotFound
from realtime.handlers import HandlerKind
from realtime.presence.service import occupancy
from realtime.store.selectors import namespace_get


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
    hub.remove(subscription)
    occupancy.stopped(subscription)


def connection_stop(outbox: Outbox, subscriptions: Iterable[LocalSubscription]) -> None:
    """A connection is gone: no more events for it or any of its subscriptions."""
    held = list(subscriptions)
    hub.disconnect(outbox, held)
    for subscription in held:
        occupancy.stopped(subscription)
