"""THE subscribe path: everything a subscription needs before it goes live (DESIGN §4).

The ladder is fixed: namespace → the connection's subscribe rate → subscribe
authorization → ``on_subscribe`` →
layer membership (:meth:`~realtime.delivery.bridge.LayerBridge.join`) → the hub's index.
The connection checks the id and the per-connection limit before any of it
(:mod:`realtime.core.session`) and answers ``subscribe_success`` after it.
"""

from __future__ import annotations

from collections.abc import Mapping

from realtime import handlers
from realtime.auth import AuthRequest, Identity, Operation, RequestInfo, authorize
from realtime.auth.limits import connection_take
from realtime.conf import realtime_settings
from realtime.core.paths import ChannelPath
from realtime.core.rates import Gcra
from realtime.delivery.bridge import bridge
from realtime.delivery.hub import LocalSubscription, hub
from realtime.exceptions import NamespaceNotFound
from realtime.handlers import HandlerKind
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

    Raises:
        NamespaceNotFound, RateExceeded, Unauthorized, HandlerRejected, HandlerError.
    """
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
            handler, handlers.context_for(Operation.SUBSCRIBE, namespace.name, channel, identity, request)
        )
    return identity


async def subscription_start(subscription: LocalSubscription) -> None:
    """Make a subscription live: events published once this returns reach it.

    Raises:
        ServiceUnavailable: the channel layer refused this process's membership.
    """
    await bridge.join(subscription.key)
    hub.add(subscription)


def subscription_stop(subscription: LocalSubscription) -> None:
    """No more events for this subscription (its group is left lazily, see the bridge)."""
    hub.remove(subscription)
