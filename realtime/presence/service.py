"""Occupancy as a service: counted on subscribe, shared across processes, streamed coalesced.

The subscribe path tells :data:`occupancy` when a subscription starts and stops
(:mod:`realtime.operations.subscribing`). A subscription to a presence channel
(``/$presence/<channel>``, PROTOCOL §12) is a *watcher*: it is not counted, it
joins no layer group (each process serves its own watchers from the store), it
gets the current occupancy right after its ``subscribe_success``, and then an
update whenever the totals change, at most one per ``OCCUPANCY_INTERVAL`` per
channel however many subscriptions come and go: 1,000 joins within a second
make at most three updates.

The background service (:meth:`OccupancyService.run`) writes this process's
changed counts every quarter interval, refreshes all of them and the process's
liveness every third of ``OCCUPANCY_PROCESS_TTL``, and reads the totals of the
watched channels of this process every quarter interval.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from realtime.conf import realtime_settings
from realtime.core import protocol
from realtime.core.paths import PRESENCE, ChannelPath, parse_channel, presence_key
from realtime.delivery.hub import Hub, LocalSubscription, hub
from realtime.lifecycle import lifecycle
from realtime.ops.dashboard import add_snapshot_part
from realtime.ops.metrics import metrics
from realtime.presence.occupancy import (
    Counts,
    LocalCounts,
    Occupancy,
    OccupancyStore,
    channel_of,
    event_for,
    store_for_layer,
)
from realtime.store.selectors import namespace_get

logger = logging.getLogger(__name__)

_SUFFIX = "/" + PRESENCE
# Channels each process reports to the live dashboard (its busiest).
DASHBOARD_CHANNELS = 10


class OccupancyService:
    """This process's counts, its watchers, and the coalesced stream to them."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        # What the coalescing measures intervals with (tests give their own).
        self.clock: Callable[[], float] = time.monotonic
        self.reset()

    def reset(self) -> None:
        """Forget counts and watchers (their event loop is gone)."""
        self.local = LocalCounts()
        self._store: OccupancyStore | None = None
        # presence key -> local watcher subscriptions
        self._watchers: dict[str, int] = {}
        # presence key -> what was last streamed and when (clock time)
        self._sent: dict[str, _Sent] = {}
        # keys this process listed members of (their member fields are rewritten with their counts)
        self._member_keys: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def store(self) -> OccupancyStore:
        if self._store is None:
            self._store = store_for_layer()
        return self._store

    # -- hooks of the subscribe path ----------------------------------------------------

    def started(self, subscription: LocalSubscription, member: tuple[str, str] | None = None) -> None:
        """A subscription went live (after the hub indexed it); ``member`` is (connection id,
        member JSON) where its namespace lists members."""
        if not realtime_settings.occupancy:
            return
        key = subscription.key
        if presence_key(key):
            metrics.watching(key.split("/", 1)[0], 1)
            self._watchers[key] = self._watchers.get(key, 0) + 1
            self._spawn(self._snapshot(subscription))
        else:
            if member is not None:
                self._member_keys.add(key)
            self.local.added(key, subscription.outbox, member)

    def stopped(self, subscription: LocalSubscription) -> None:
        """A subscription ended (unsubscribe, or its connection closed)."""
        key = subscription.key
        if presence_key(key):
            if key in self._watchers:
                metrics.watching(key.split("/", 1)[0], -1)
            left = self._watchers.get(key, 0) - 1
            if left > 0:
                self._watchers[key] = left
            else:
                self._watchers.pop(key, None)
                self._sent.pop(key, None)
        else:
            self.local.removed(key, subscription.outbox)

    # -- reading ---------------------------------------------------------------------

    async def totals(self, keys: list[str]) -> dict[str, Counts]:
        """Subscriptions and connections per key, over every live process."""
        others = await self.store.others(self.local.process, keys) if self.store.distributed else {}
        totals: dict[str, Counts] = {}
        for key in keys:
            subs, conns = self.local.get(key)
            other_subs, other_conns = others.get(key, (0, 0))
            totals[key] = (subs + other_subs, conns + other_conns)
        return totals

    async def read(self, channel: ChannelPath) -> Occupancy:
        """The occupancy of a channel or wildcard (its presence channel's, if given one)."""
        key = channel.watched.key
        subscriptions, connections = (await self.totals([key]))[key]
        return Occupancy(channel.watched.path, subscriptions, connections)

    async def members(self, key: str) -> tuple[dict[str, str] | None, int]:
        """Members of ``key`` over every live process (``None`` where the namespace lists none),
        and the namespace's cap."""
        namespace = await namespace_get(name=key.split("/", 1)[0])
        if namespace is None or not namespace.presence:
            return None, 0
        held = self.local.members(key)
        if self.store.distributed:
            held = {**await self.store.other_members(self.local.process, key), **held}
        return held, namespace.presence_max_members

    async def _view(self, key: str, counts: Counts | None = None) -> _Sent:
        if counts is None:
            counts = (await self.totals([key]))[key]
        members, cap = await self.members(key)
        return _Sent(counts, members, cap, self.clock())

    async def dashboard(self, limit: int | None = None) -> dict[str, Any]:
        """This process's part of the live dashboard's snapshot (:mod:`realtime.ops.dashboard`):
        its ``limit`` (:data:`DASHBOARD_CHANNELS`) busiest channels with their totals over every
        process, and its presence watchers per namespace. Bounded whatever the number of
        channels; the page keeps each channel's latest total and shows the busiest."""
        keys = [key for key in self.local.keys() if not key.startswith("$")]
        limit = DASHBOARD_CHANNELS if limit is None else limit
        counts = self.local.get
        busiest = heapq.nsmallest(limit, keys, key=lambda key: (-counts(key)[0], -counts(key)[1], key))
        totals = await self.totals(busiest) if busiest else {}
        channels = [
            {"channel": channel_of(key), "subscriptions": subs, "connections": conns}
            for key, (subs, conns) in sorted(totals.items(), key=lambda item: (-item[1][0], item[0]))
        ]
        watchers: dict[str, int] = {}
        for watch, count in self._watchers.items():
            namespace = watch.split("/", 1)[0]
            watchers[namespace] = watchers.get(namespace, 0) + count
        return {"channels": channels, "watchers": watchers}

    # -- the stream ------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _snapshot(self, subscription: LocalSubscription) -> None:
        """The current occupancy, to one new watcher (its subscribe_success is queued already)."""
        key = subscription.key[: -len(_SUFFIX)]
        try:
            view = await self._view(key)
        except Exception as exc:
            logger.warning("occupancy of %s could not be read: %s", channel_of(key), exc)
            return
        self._sent.setdefault(subscription.key, view)
        event = protocol.encode_event(view.event(key, None))
        subscription.outbox.offer(subscription.prefix + event + protocol.DATA_FRAME_SUFFIX)

    async def stream_once(self) -> int:
        """Send every watched channel whose totals changed and whose interval has passed."""
        if not self._watchers:
            return 0
        now = self.clock()
        interval = realtime_settings.occupancy_interval
        due = [
            watch
            for watch in self._watchers
            if watch not in self._sent or now - self._sent[watch].at >= interval * 0.999
        ]
        if not due:
            return 0
        # One store round trip for every due channel's counts.
        totals = await self.totals([watch[: -len(_SUFFIX)] for watch in due])
        sent = 0
        for watch in due:
            key = watch[: -len(_SUFFIX)]
            last = self._sent.get(watch)
            view = await self._view(key, totals[key])
            if last is not None and last.same_as(view):
                continue
            if watch not in self._watchers:  # the last watcher left while we read
                continue
            view.at = now
            self._sent[watch] = view
            self.hub.deliver(watch, [protocol.encode_event(view.event(key, last))])
            sent += 1
        return sent

    async def _write(self, counts: dict[str, Counts], ttl: float) -> None:
        members = {key: self.local.members(key) for key in counts if key in self._member_keys}
        await self.store.write(self.local.process, counts, ttl, members)
        self._member_keys -= {key for key, held in members.items() if not held}

    async def run(self) -> None:
        """The background service: write this process's counts, stream the watched channels."""
        if not realtime_settings.occupancy:
            return
        loop = asyncio.get_running_loop()
        last_refresh = -float("inf")
        while True:
            interval = realtime_settings.occupancy_interval
            ttl = realtime_settings.occupancy_process_ttl
            await asyncio.sleep(interval / 4)
            try:
                if self.store.distributed:
                    if loop.time() - last_refresh >= ttl / 3:
                        last_refresh = loop.time()
                        await self._write(self.local.everything(), ttl)
                    elif self.local.changed:
                        await self._write(self.local.take_changed(), ttl)
                else:
                    self.local.changed.clear()
                await self.stream_once()
            except Exception as exc:
                # Redis away: counts are rewritten in full once it is back.
                logger.warning("occupancy could not reach its store: %s", exc)
                last_refresh = -float("inf")


class _Sent:
    """One watched channel's view as last streamed: counts, members (or None), cap, time."""

    __slots__ = ("counts", "members", "cap", "at")

    def __init__(self, counts: Counts, members: dict[str, str] | None, cap: int, at: float) -> None:
        self.counts = counts
        self.members = members
        self.cap = cap
        self.at = at

    def same_as(self, other: _Sent) -> bool:
        return self.counts == other.counts and self.members == other.members

    def listed(self) -> bool:
        return self.members is not None and len(self.members) <= self.cap

    def event(self, key: str, previous: _Sent | None) -> str:
        """The event text: counts, and where the namespace lists members (up to its cap) the
        members, with who joined and left since ``previous``."""
        extra: dict[str, Any] = {}
        if self.members is not None:
            if self.listed():
                members = self.members
                extra["members"] = [json.loads(members[c]) for c in sorted(members)]
                if previous is not None and previous.listed():
                    assert previous.members is not None
                    extra["joined"] = [
                        json.loads(members[c]) for c in sorted(members.keys() - previous.members)
                    ]
                    extra["left"] = [{"connection": c} for c in sorted(previous.members.keys() - members)]
            else:
                # Above the namespace's cap: counts only.
                extra["membersOmitted"] = True
        return event_for(Occupancy(channel_of(key), *self.counts), extra)


def api_key_key(api_key_id: int) -> str:
    """The occupancy key that counts the open connections of an API key (no channel's: ``$``)."""
    return f"$apikey/{api_key_id}"


async def api_key_connections(api_key_id: int) -> int:
    """Open connections of an API key, over every live process (the admin shows it)."""
    key = api_key_key(api_key_id)
    return (await occupancy.totals([key]))[key][1]


async def occupancy_get(channel: str) -> Occupancy:
    """The occupancy of a channel or wildcard, from any event loop (``realtime.occupancy``).

    Raises:
        InvalidChannel: ``channel`` breaks the grammar.
    """
    path = parse_channel(channel, allow_wildcard=True)
    if lifecycle.owned_elsewhere():
        # This process's own counts live with the loop that serves its sockets.
        owner = lifecycle.loop
        assert owner is not None
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(occupancy.read(path), owner))
    return await occupancy.read(path)


occupancy = OccupancyService(hub)
lifecycle.on_new_loop("occupancy", occupancy.reset)
add_snapshot_part("occupancy", occupancy.dashboard)
