"""The layer bridge: events between this process and the others (DESIGN §5).

The bridge uses the Channels layer per *process*, not per connection: the
process joins the layer group of a key when its first local subscriber to that
key arrives (:meth:`LayerBridge.join`), and publishes go out as one layer
message per matching key, carrying every event published in the same loop pass
(one layer round trip for a burst, not one per event). Every other process that
holds subscribers of the key receives it once and hands it to its
:mod:`~realtime.delivery.hub`; the publishing process delivers to its own subscribers
directly once the layer has the message, and ignores its own copy. With the
in-memory layer (or none) there is only one process and no layer traffic at all:
:meth:`LayerBridge.fan_out_nowait` delivers in line.

Groups are left lazily (a sweep discards groups no local subscriber uses), so
a subscribe/unsubscribe loop does not churn the layer, and re-joined
periodically and after a lost connection, since channels_redis expires group
membership and a restarted Redis may have forgotten it.

The receive loop and the sweep run as one background service
(:mod:`realtime.lifecycle`); the rest is called by the publish and subscribe paths.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict, TypeGuard

from channels.layers import BaseChannelLayer, InMemoryChannelLayer, get_channel_layer

from realtime.core.paths import ChannelPath
from realtime.delivery.hub import Hub, hub
from realtime.exceptions import ServiceUnavailable
from realtime.lifecycle import lifecycle
from realtime.ops.logs import background_context

logger = logging.getLogger(__name__)

SWEEP_INTERVAL = 10.0
# Membership is re-asserted this often: channels_redis expires it, and a Redis
# restarted without persistence forgets it (a lost connection also triggers an
# immediate rejoin, see _receive_loop).
GROUP_REFRESH_INTERVAL = 30.0
# The longest wait between two attempts of the receive loop to reach a lost layer: other
# processes' events wait in Redis meanwhile, so it bounds how late they arrive once Redis is
# back (a Sentinel failover takes a few seconds; one attempt per process every 2 s costs nothing).
RECEIVE_BACKOFF_CAP = 2.0
# Events of one layer message at most (a single publish may exceed it alone).
LAYER_BATCH_BYTES = 512 * 1024
# The prefix of the process's layer channel (realtime.ops.health shares it, see there).
CHANNEL_PREFIX = "realtime.delivery.hub."
# Every process is a member: server-side control (realtime.presence.control) reaches them all.
CONTROL_GROUP = "rt-control"
CONTROL_TYPE = "realtime.control"


def leaves_process(layer: BaseChannelLayer | None) -> TypeGuard[BaseChannelLayer]:
    """``layer`` carries messages between processes (channels_redis), not only within one."""
    return layer is not None and not isinstance(layer, InMemoryChannelLayer)


class EventMessage(TypedDict):
    """The layer message a publish sends to each matching key's group."""

    type: Literal["realtime.event"]
    key: str
    events: list[str]
    # The publishing process's layer channel: it delivered locally already.
    origin: str
    # The epoch of the key's history stream the events' offsets belong to (a key with history
    # only): the receiving hub tells a late copy from a restarted stream by it (Hub.fence).
    # Inside the server only: data frames carry the offset alone.
    epoch: NotRequired[str]


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
    # Events that differ per key (a history stream's offsets); the others get ``events``.
    keyed: Mapping[str, list[str]] | None = None
    # The epoch of each history stream ``keyed`` numbers.
    epochs: Mapping[str, str] | None = None

    def events_for(self, key: str) -> list[str]:
        return self.events if self.keyed is None else self.keyed.get(key, self.events)

    def epoch_for(self, key: str) -> str | None:
        return None if self.epochs is None else self.epochs.get(key)


class LayerBridge:
    """This process's membership in the channel layer, and the events through it."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # Called with each control message another process sent (set by realtime.presence.control).
        self.on_control: Callable[[dict[str, Any]], None] | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the layer and everything in flight (their event loop is gone)."""
        self._bound = False
        self._binding: asyncio.Task[None] | None = None
        self._layer: BaseChannelLayer | None = None
        self._channel: str | None = None
        self._joined: dict[str, asyncio.Task[None]] = {}
        # Callers of join() not yet resumed, per key: their subscriber is not in the hub yet.
        self._joining: dict[str, int] = {}
        self._leaving: dict[str, asyncio.Task[None]] = {}
        self._outgoing: list[_Outgoing] = []
        self._sender: asyncio.Task[None] | None = None

    # -- binding to the layer ----------------------------------------------------

    async def ready(self) -> None:
        """Bind to this loop's channel layer, once: after this, fan-out needs no await."""
        # First: on a new event loop this resets what belonged to the old one.
        lifecycle.ensure_started()
        if self._bound:
            return
        if self._binding is None:
            self._binding = asyncio.get_running_loop().create_task(self._bind())
        await asyncio.shield(self._binding)

    async def _bind(self) -> None:
        layer = get_channel_layer()
        if leaves_process(layer):
            self._channel = await layer.new_channel(  # type: ignore[call-arg]  # real layers take a prefix
                CHANNEL_PREFIX
            )
            await layer.group_add(CONTROL_GROUP, self._channel)
            self._layer = layer
        self._bound = True

    @property
    def is_distributed(self) -> bool:
        return self._layer is not None

    async def run(self) -> None:
        """The background service: receive other processes' events, sweep unused groups."""
        await self.ready()
        if self._layer is None:
            return
        await asyncio.gather(self._receive_loop(), self._sweep_loop())

    # -- membership ----------------------------------------------------------------

    async def join(self, key: str) -> None:
        """Join the group of ``key``; returns once events published from now reach this process.

        The caller indexes its subscriber in the hub before its next await: until
        this returns, the sweep keeps the key (see :meth:`_sweep`).

        Raises:
            ServiceUnavailable: the channel layer refused.
        """
        await self.ready()
        if self._layer is None:
            return
        joined = self._joined.get(key)
        if joined is None:
            joined = self._joined[key] = asyncio.get_running_loop().create_task(self._join(key))
        self._joining[key] = self._joining.get(key, 0) + 1
        try:
            await asyncio.shield(joined)
        except Exception as exc:
            if self._joined.get(key) is joined:
                del self._joined[key]
            raise ServiceUnavailable() from exc
        finally:
            waiting = self._joining.pop(key, 1) - 1  # reset() may have forgotten it
            if waiting:
                self._joining[key] = waiting

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
            logger.warning("realtime bridge could not leave the group of %s: %s", key, exc)
        finally:
            if self._leaving.get(key) is asyncio.current_task():
                del self._leaving[key]

    async def _sweep_loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_refresh = loop.time()
        while True:
            await asyncio.sleep(SWEEP_INTERVAL)
            self._sweep()
            if loop.time() - last_refresh >= GROUP_REFRESH_INTERVAL:
                last_refresh = loop.time()
                await self._refresh_groups()

    def _sweep(self) -> None:
        """Leave the groups of keys no local subscriber holds.

        A key whose join completed but whose caller has not resumed yet is held
        by nobody for a few loop passes: leaving it then would leave its
        subscriber, once indexed, in no group (and out of the refresh, which
        rejoins only kept keys), hearing nothing published on it, ever.
        """
        loop = asyncio.get_running_loop()
        for key in [
            k
            for k, task in self._joined.items()
            if task.done() and k not in self._joining and not self.hub.holds(k)
        ]:
            del self._joined[key]
            self._leaving[key] = loop.create_task(self._leave(key))

    async def _refresh_groups(self) -> None:
        try:
            await self._rejoin_groups()
        except Exception as exc:
            # Expected while the layer is down (the receive loop rejoins on reconnect): no traceback.
            logger.warning("realtime bridge could not refresh group membership: %s", exc)

    async def _rejoin_groups(self) -> None:
        """Add this process to every group it holds subscribers for (again)."""
        assert self._layer is not None and self._channel is not None
        await self._layer.group_add(CONTROL_GROUP, self._channel)
        for key in list(self._joined):
            await self._layer.group_add(group_name_for(key), self._channel)

    # -- control -------------------------------------------------------------------

    async def send_control(self, message: dict[str, Any]) -> None:
        """Send a control message to every other process (nothing to do with one process).

        Raises:
            ServiceUnavailable: the channel layer refused it.
        """
        if lifecycle.loop is asyncio.get_running_loop():
            await self.ready()
        elif not self._bound:
            # A process that serves no sockets (a management command revoking a key)
            # binds to the layer without starting the server's background services.
            await self._bind()
        if self._layer is None:
            return
        try:
            await self._layer.group_send(
                CONTROL_GROUP, {**message, "type": CONTROL_TYPE, "origin": self._channel}
            )
        except Exception as exc:
            raise ServiceUnavailable() from exc

    # -- fan-out -------------------------------------------------------------------

    async def fan_out(
        self,
        channel: ChannelPath,
        events: list[str],
        keyed: Mapping[str, list[str]] | None = None,
        epochs: Mapping[str, str] | None = None,
    ) -> asyncio.Future[None] | None:
        """Hand JSON-encoded events to every process, from any event loop.

        ``keyed`` replaces ``events`` for the keys it names (each history stream
        numbers the events its own way, :mod:`realtime.delivery.history`), and
        ``epochs`` names those streams.

        Returns what :meth:`fan_out_nowait` returns, or ``None`` once the loop
        that owns the sockets has delivered them (sync code in a thread of its
        own runs a private loop: the events go to the owner loop instead of
        rebinding, which would drop every local subscription).

        Raises:
            ServiceUnavailable: from another loop, the channel layer could not take them.
        """
        if lifecycle.owned_elsewhere():
            owner = lifecycle.loop
            assert owner is not None
            future = asyncio.run_coroutine_threadsafe(
                self._fan_out_and_wait(channel, events, keyed, epochs), owner
            )
            await asyncio.wrap_future(future)
            return None
        await self.ready()
        return self.fan_out_nowait(channel, events, keyed, epochs)

    async def _fan_out_and_wait(
        self,
        channel: ChannelPath,
        events: list[str],
        keyed: Mapping[str, list[str]] | None,
        epochs: Mapping[str, str] | None,
    ) -> None:
        sent = await self.fan_out(channel, events, keyed, epochs)
        if sent is not None:
            await sent

    def fan_out_nowait(
        self,
        channel: ChannelPath,
        events: list[str],
        keyed: Mapping[str, list[str]] | None = None,
        epochs: Mapping[str, str] | None = None,
    ) -> asyncio.Future[None] | None:
        """Take events for delivery, in call order; call on the owner loop, after :meth:`ready`.

        Returns ``None`` when every subscriber has them already (one process),
        else a future that completes once the other processes were sent them
        and this process's subscribers have them, or fails with
        :class:`ServiceUnavailable` (and nobody got them) when the layer is down.
        """
        keys = channel.matching_keys()
        if self._layer is None:
            for key in keys:
                self.hub.deliver(
                    key,
                    events if keyed is None else keyed.get(key, events),
                    None if epochs is None else epochs.get(key),
                )
            return None
        # Other processes first, then this one's subscribers, so a publish that
        # cannot reach the layer reaches nobody. Publishes made in the same loop
        # pass travel in one layer message per key: a publisher's pipelined
        # frames (or many publishers at once) cost one layer round trip, not one
        # each, and keep their order, since one sender sends batches in turn.
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self._outgoing.append(_Outgoing(keys, events, done, keyed, epochs))
        if self._sender is None:
            self._sender = loop.create_task(self._send_outgoing(), context=background_context())
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
                        self.hub.deliver(key, item.events_for(key), item.epoch_for(key))
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
        # One message per key, or per key and epoch: a stream restarted between two publishes
        # of the batch (rare) numbers the later ones under another epoch.
        per_key: dict[tuple[str, str | None], list[str]] = {}
        for item in batch:
            for key in item.keys:
                per_key.setdefault((key, item.epoch_for(key)), []).extend(item.events_for(key))
        for (key, epoch), events in per_key.items():
            message: EventMessage = {
                "type": "realtime.event",
                "key": key,
                "events": events,
                "origin": self._channel,
            }
            if epoch is not None:
                message["epoch"] = epoch
            await self._layer.group_send(group_name_for(key), dict(message))

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
                    logger.info("realtime bridge reconnected to the channel layer")
                message: dict[str, Any] = await self._layer.receive(self._channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("realtime bridge lost the channel layer (%s); retrying in %.1fs", exc, backoff)
                rejoin = True
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, RECEIVE_BACKOFF_CAP)
                continue
            backoff = 0.1
            if message.get("origin") == self._channel:
                continue
            if message.get("type") == "realtime.event":
                # A process running older code sends no epoch: the hub's fence then times out.
                self.hub.deliver(message["key"], message["events"], message.get("epoch"))
            elif message.get("type") == CONTROL_TYPE and self.on_control is not None:
                self.on_control(message)


bridge = LayerBridge(hub)
lifecycle.on_new_loop("bridge", bridge.reset)
