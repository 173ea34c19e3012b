"""The per-process subscription index and local fan-out (DESIGN §5).

Each server process has one :class:`Hub`. It maps subscription keys
(``ns/a/b`` or ``ns/a/*``, see :mod:`realtime.paths`) to the local
subscriptions holding them, and delivers an event by appending one pre-built
frame per subscription to that connection's :class:`~realtime.outbox.Outbox`.

Across processes the hub uses the Channels layer per *process*, not per
connection: the process joins the layer group of a key when its first local
subscriber to that key arrives, and publishes go out as one layer message per
matching key, carrying every event published in the same loop pass (one layer
round trip for a burst, not one per event). Every other process that holds
subscribers of the key receives it once and delivers locally; the publishing
process delivers to its own subscribers directly once the layer has the message,
and ignores its own copy. With the in-memory
layer (or none) there is only one process and no layer traffic at all.

Groups are left lazily (a sweep discards groups no local subscriber uses), so
a subscribe/unsubscribe loop does not churn the layer, and re-joined
periodically and after a lost connection, since channels_redis expires group
membership and a restarted Redis may have forgotten it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypedDict

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from . import protocol
from .conf import realtime_settings
from .exceptions import ServiceUnavailable
from .logs import background_context
from .metrics import metrics
from .outbox import Outbox
from .paths import ChannelPath

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 10.0
# Membership is re-asserted this often: channels_redis expires it, and a Redis
# restarted without persistence forgets it (a lost connection also triggers an
# immediate rejoin, see _receive_loop).
GROUP_REFRESH_INTERVAL = 30.0
# Events of one layer message at most (a single publish may exceed it alone).
LAYER_BATCH_BYTES = 512 * 1024


class EventMessage(TypedDict):
    """The layer message a publish sends to each matching key's group."""

    type: Literal["realtime.event"]
    key: str
    events: list[str]
    # The publishing process's hub channel: it delivered locally already.
    origin: str


def group_name_for(key: str) -> str:
    """A layer group name derived from a subscription key, never from client text.

    Channels allows only ``[A-Za-z0-9._-]`` and fewer than 100 characters; the
    namespace (at most 50 such characters) keeps names readable in Redis.
    """
    namespace = key.split("/", 1)[0]
    digest = hashlib.sha1(key.encode(), usedforsecurity=False).hexdigest()[:24]
    return f"rt.{namespace}.{digest}"


@dataclass(slots=True)
class _Outgoing:
    """A publish waiting for the layer sender."""

    keys: list[str]
    events: list[str]
    done: asyncio.Future[None]


@dataclass(eq=False, slots=True)
class LocalSubscription:
    """One subscription of one local connection; identity-hashed."""

    outbox: Outbox
    key: str
    prefix: str = field(default="")

    @classmethod
    def create(cls, outbox: Outbox, subscription_id: str, channel: ChannelPath) -> LocalSubscription:
        return cls(outbox, channel.key, protocol.data_frame_prefix(subscription_id))


class Hub:
    """Subscription index and fan-out for the connections of this process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reset()

    def _reset(self) -> None:
        self._index: dict[str, dict[LocalSubscription, None]] = {}
        self._connections: dict[Outbox, None] = {}
        self._layer: BaseChannelLayer | None = None
        self._channel: str | None = None
        self._joined: dict[str, asyncio.Task[None]] = {}
        self._leaving: dict[str, asyncio.Task[None]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._outgoing: list[_Outgoing] = []
        self._sender: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------

    async def ready(self) -> None:
        """Bind to the running loop (and its layer) on first use."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        # A new loop (tests start one per test; servers start one per process):
        # whatever belonged to the old loop is dead.
        for task in self._tasks:
            task.cancel()
        self._reset()
        self._loop = loop
        layer = get_channel_layer()
        # Process-wide tasks log with no connection's or request's id.
        context = background_context()
        self._tasks.append(loop.create_task(self._keepalive_loop(), context=context))
        from .dashboard import sampler_run  # the dashboard publishes through this hub

        self._tasks.append(loop.create_task(sampler_run(), context=context))
        if layer is not None and not isinstance(layer, InMemoryChannelLayer):
            self._layer = layer
            self._channel = await layer.new_channel("realtime.hub.")
            self._tasks.append(loop.create_task(self._receive_loop(), context=context))
            self._tasks.append(loop.create_task(self._sweep_loop(), context=context))

    @property
    def is_distributed(self) -> bool:
        return self._layer is not None

    # -- connections ---------------------------------------------------------

    async def connect(self, outbox: Outbox) -> None:
        await self.ready()
        self._connections[outbox] = None

    def disconnect(self, outbox: Outbox, subscriptions: Iterable[LocalSubscription]) -> None:
        self._connections.pop(outbox, None)
        for subscription in subscriptions:
            self.remove(subscription)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    @property
    def subscription_count(self) -> int:
        return sum(len(subs) for subs in self._index.values())

    async def _keepalive_loop(self) -> None:
        # One timer for every connection of the process, not one per connection.
        while True:
            await asyncio.sleep(realtime_settings.keepalive_interval)
            for outbox in list(self._connections):
                outbox.offer(protocol.KEEPALIVE)

    # -- subscriptions -------------------------------------------------------

    async def add(self, subscription: LocalSubscription) -> None:
        """Index a subscription; returns once events published from now reach it."""
        await self.ready()
        key = subscription.key
        if self._layer is not None:
            joined = self._joined.get(key)
            if joined is None:
                joined = self._joined[key] = asyncio.get_running_loop().create_task(self._join(key))
            try:
                await asyncio.shield(joined)
            except Exception as exc:
                if self._joined.get(key) is joined:
                    del self._joined[key]
                raise ServiceUnavailable() from exc
        self._index.setdefault(key, {})[subscription] = None

    def remove(self, subscription: LocalSubscription) -> None:
        subs = self._index.get(subscription.key)
        if subs is not None:
            subs.pop(subscription, None)
            if not subs:
                del self._index[subscription.key]

    async def _join(self, key: str) -> None:
        leaving = self._leaving.get(key)
        if leaving is not None:
            # Membership changes of one key must reach the layer in order.
            await asyncio.gather(leaving, return_exceptions=True)
        assert self._layer is not None and self._channel is not None
        await self._layer.group_add(group_name_for(key), self._channel)

    async def _leave(self, key: str) -> None:
        assert self._layer is not None and self._channel is not None
        try:
            await self._layer.group_discard(group_name_for(key), self._channel)
        except Exception as exc:
            # Nobody awaits a sweep's leave: unhandled, asyncio would log "Task exception was
            # never retrieved" with a traceback. Staying in the group costs only stray messages
            # until channels_redis expires the membership.
            logger.warning("realtime hub could not leave the group of %s: %s", key, exc)
        finally:
            if self._leaving.get(key) is asyncio.current_task():
                del self._leaving[key]

    async def _sweep_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_refresh = loop.time()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            for key in [k for k, task in self._joined.items() if task.done() and k not in self._index]:
                del self._joined[key]
                self._leaving[key] = loop.create_task(self._leave(key))
            if loop.time() - last_refresh >= GROUP_REFRESH_INTERVAL:
                last_refresh = loop.time()
                await self._refresh_groups()

    async def _refresh_groups(self) -> None:
        try:
            await self._rejoin_groups()
        except Exception as exc:
            # Expected while the layer is down (the receive loop rejoins on reconnect): no traceback.
            logger.warning("realtime hub could not refresh group membership: %s", exc)

    async def _rejoin_groups(self) -> None:
        """Add this process to every group it holds subscribers for (again)."""
        assert self._layer is not None and self._channel is not None
        for key in list(self._joined):
            await self._layer.group_add(group_name_for(key), self._channel)

    # -- fan-out -------------------------------------------------------------

    async def publish(self, channel: ChannelPath, events: list[str]) -> None:
        """Deliver JSON-encoded events to every subscription matching ``channel``.

        Raises:
            ServiceUnavailable: the channel layer could not take the message.
        """
        sent = await self.take(channel, events)
        if sent is not None:
            await sent

    async def take(self, channel: ChannelPath, events: list[str]) -> asyncio.Future[None] | None:
        """Take events for delivery from any loop; see :meth:`publish_nowait` for the result."""
        owner = self._loop
        if owner is not None and owner is not asyncio.get_running_loop() and owner.is_running():
            # Sync code in a thread of its own (async_to_sync then runs a private
            # loop): deliver on the loop that owns the sockets instead of
            # rebinding, which would drop every local subscription.
            future = asyncio.run_coroutine_threadsafe(self.publish(channel, events), owner)
            await asyncio.wrap_future(future)
            return None
        await self.ready()
        return self.publish_nowait(channel, events)

    def publish_nowait(self, channel: ChannelPath, events: list[str]) -> asyncio.Future[None] | None:
        """Take events for delivery, in call order; call on the hub's loop, after it is ready.

        Returns ``None`` when every subscriber has them already (one process),
        else a future that completes once the other processes were sent them
        and this process's subscribers have them, or fails with
        :class:`ServiceUnavailable` (and nobody got them) when the layer is down.
        """
        keys = channel.matching_keys()
        if self._layer is None:
            for key in keys:
                self.deliver(key, events)
            return None
        # Other processes first, then this one's subscribers, so a publish that
        # cannot reach the layer reaches nobody. Publishes made in the same loop
        # pass travel in one layer message per key: a publisher's pipelined
        # frames (or many publishers at once) cost one layer round trip, not one
        # each, and keep their order, since one sender sends batches in turn.
        assert self._loop is not None
        done = self._loop.create_future()
        self._outgoing.append(_Outgoing(keys, events, done))
        if self._sender is None:
            self._sender = self._loop.create_task(self._send_outgoing(), context=background_context())
        return done

    async def _send_outgoing(self) -> None:
        try:
            await asyncio.sleep(0)  # let the rest of this loop pass add to the batch
            while self._outgoing:
                batch = self._take_batch()
                try:
                    await self._send_batch(batch)
                except Exception as exc:
                    logger.warning("realtime publish could not reach the channel layer: %s", exc)
                    for item in batch:
                        if not item.done.done():
                            item.done.set_exception(ServiceUnavailable())
                    continue
                for item in batch:
                    for key in item.keys:
                        self.deliver(key, item.events)
                    if not item.done.done():
                        item.done.set_result(None)
        finally:
            self._sender = None

    def _take_batch(self) -> list[_Outgoing]:
        """The oldest publishes, up to ``LAYER_BATCH_BYTES`` of events (at least one)."""
        outgoing = self._outgoing
        size = 0
        count = 0
        for item in outgoing:
            size += sum(len(event) for event in item.events)
            if count and size > LAYER_BATCH_BYTES:
                break
            count += 1
        batch = outgoing[:count]
        del outgoing[:count]
        return batch

    async def _send_batch(self, batch: list[_Outgoing]) -> None:
        assert self._layer is not None and self._channel is not None
        per_key: dict[str, list[str]] = {}
        for item in batch:
            for key in item.keys:
                per_key.setdefault(key, []).extend(item.events)
        for key, events in per_key.items():
            message: EventMessage = {
                "type": "realtime.event",
                "key": key,
                "events": events,
                "origin": self._channel,
            }
            await self._layer.group_send(group_name_for(key), dict(message))

    def deliver(self, key: str, events: list[str]) -> int:
        """Append one frame per event to each local subscription of ``key``."""
        subs = self._index.get(key)
        if not subs:
            return 0
        targets = list(subs)
        for event in events:
            tail = event + protocol.DATA_FRAME_SUFFIX
            for subscription in targets:
                subscription.outbox.offer(subscription.prefix + tail)
        metrics.delivered(key, len(targets) * len(events))
        return len(targets) * len(events)

    async def _receive_loop(self) -> None:
        assert self._layer is not None and self._channel is not None
        backoff = 0.1
        rejoin = False
        while True:
            try:
                if rejoin:
                    # Redis may have restarted empty: membership is ours to restore.
                    await self._rejoin_groups()
                    rejoin = False
                    logger.info("realtime hub reconnected to the channel layer")
                message: dict[str, Any] = await self._layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("realtime hub lost the channel layer (%s); retrying in %.1fs", exc, backoff)
                rejoin = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if message.get("type") == "realtime.event" and message.get("origin") != self._channel:
                self.deliver(message["key"], message["events"])


hub = Hub()
