"""Occupancy: subscriptions and distinct connections per channel key, across processes.

Each process counts its own subscriptions per subscription key (``ns/a/b`` or
``ns/a/*``, see :mod:`realtime.core.paths`) when they start and stop: nothing is
counted per delivery, so fan-out costs what it did. The counts of all processes
meet in a store:

- one process (the in-memory layer): the local counts are the totals;
- with channels_redis: one Redis hash per key, ``<prefix>:rt:occ:<key>``, holding
  ``"<subscriptions> <connections>"`` per process id, and one key per process,
  ``<prefix>:rt:alive:<process>``, that expires ``OCCUPANCY_PROCESS_TTL`` seconds
  after the process last refreshed it. A reader sums the fields of the live
  processes and deletes those of dead ones, so a killed process stops counting
  once its key expires, with no central process.

A process writes the keys that changed every quarter of ``OCCUPANCY_INTERVAL``
and rewrites all it holds (and its alive key) every third of the process TTL,
which also restores its counts after Redis lost them. Totals are read fresh: the
other processes' from the store, this process's own from memory.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer

logger = logging.getLogger(__name__)

# A key's hash outlives its last write by this much at most (a process rewrites it every TTL/3).
HASH_TTL_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class Occupancy:
    """How many subscriptions a channel or wildcard has, and from how many connections."""

    channel: str
    subscriptions: int
    connections: int

    @property
    def counts(self) -> tuple[int, int]:
        return (self.subscriptions, self.connections)

    def as_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "subscriptions": self.subscriptions, "connections": self.connections}


Counts = tuple[int, int]
# key -> connection id -> member JSON: this process's members of the keys that list them.
Members = dict[str, dict[str, str]]


class LocalCounts:
    """This process's subscriptions per key, and the keys that changed since they were written."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        # key -> holder (a connection's outbox) -> its subscriptions of the key
        self._held: dict[str, dict[object, int]] = {}
        self.changed: set[str] = set()
        # key -> holder -> (connection id, member JSON), where the namespace lists members
        self._members: dict[str, dict[object, tuple[str, str]]] = {}
        # This process's name in the store; a new event loop is a new process there.
        self.process = uuid.uuid4().hex[:16]

    def added(self, key: str, holder: object, member: tuple[str, str] | None = None) -> None:
        holders = self._held.setdefault(key, {})
        holders[holder] = holders.get(holder, 0) + 1
        if member is not None:
            self._members.setdefault(key, {}).setdefault(holder, member)
        self.changed.add(key)

    def removed(self, key: str, holder: object) -> None:
        holders = self._held.get(key)
        if holders is None or holder not in holders:
            return
        left = holders[holder] - 1
        if left:
            holders[holder] = left
        else:
            del holders[holder]
            if not holders:
                del self._held[key]
            members = self._members.get(key)
            if members is not None:
                members.pop(holder, None)
                if not members:
                    del self._members[key]
        self.changed.add(key)

    def members(self, key: str) -> dict[str, str]:
        """This process's members of ``key``: connection id -> member JSON."""
        return dict(self._members.get(key, {}).values())

    def get(self, key: str) -> Counts:
        holders = self._held.get(key)
        if not holders:
            return (0, 0)
        return (sum(holders.values()), len(holders))

    def keys(self) -> list[str]:
        return list(self._held)

    def take_changed(self) -> dict[str, Counts]:
        changed, self.changed = self.changed, set()
        return {key: self.get(key) for key in changed}

    def everything(self) -> dict[str, Counts]:
        """Every key held, and those that changed since the last write: a key whose last
        subscription ended is no longer held, and its zero must still be written."""
        keys, self.changed = self._held.keys() | self.changed, set()
        return {key: self.get(key) for key in keys}


class OccupancyStore:
    """Where processes meet: nothing to share in one process."""

    distributed = False

    async def write(self, process: str, counts: dict[str, Counts], ttl: float, members: Members) -> None:
        return None

    async def others(self, process: str, keys: list[str]) -> dict[str, Counts]:
        """Totals per key of every live process but ``process``."""
        return {}

    async def other_members(self, process: str, key: str) -> dict[str, str]:
        """Members of ``key`` held by every live process but ``process``: connection id -> JSON."""
        return {}


class RedisOccupancyStore(OccupancyStore):
    """Per-process counts in one Redis hash per key, on the channel layer's first host."""

    distributed = True

    def __init__(self, layer: Any) -> None:
        self.layer = layer
        prefix = getattr(layer, "prefix", "asgi")
        self._hash = f"{prefix}:rt:occ:"
        self._members = f"{prefix}:rt:mem:"
        self._alive = f"{prefix}:rt:alive:"
        # key -> member fields this process wrote last (to delete those that left)
        self._written: dict[str, set[str]] = {}

    def _redis(self) -> Any:
        # channels_redis keeps one connection pool per event loop.
        return self.layer.connection(0)

    async def write(self, process: str, counts: dict[str, Counts], ttl: float, members: Members) -> None:
        pipe = self._redis().pipeline(transaction=False)
        for key, (subscriptions, connections) in counts.items():
            name = self._hash + key
            if subscriptions:
                pipe.hset(name, process, f"{subscriptions} {connections}")
                pipe.expire(name, HASH_TTL_SECONDS)
            else:
                pipe.hdel(name, process)
        for key, held in members.items():
            name = self._members + key
            fields = {f"{process} {connection}": text for connection, text in held.items()}
            gone = self._written.get(key, set()) - fields.keys()
            if gone:
                pipe.hdel(name, *gone)
            if fields:
                pipe.hset(name, mapping=fields)
                pipe.expire(name, HASH_TTL_SECONDS)
            self._written[key] = set(fields)
        pipe.set(self._alive + process, b"1", px=max(1, int(ttl * 1000)))
        await pipe.execute()

    async def others(self, process: str, keys: list[str]) -> dict[str, Counts]:
        if not keys:
            return {}
        redis = self._redis()
        pipe = redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(self._hash + key)
        fields: list[dict[bytes, bytes]] = await pipe.execute()
        alive = await self._alive_among({p.decode() for held in fields for p in held} - {process})
        totals: dict[str, Counts] = {}
        dead: list[tuple[str, str]] = []
        for key, held in zip(keys, fields, strict=True):
            subscriptions = connections = 0
            for raw_process, raw_counts in held.items():
                other = raw_process.decode()
                if other == process:
                    continue
                if other not in alive:
                    dead.append((key, other))
                    continue
                subs, conns = raw_counts.split()
                subscriptions += int(subs)
                connections += int(conns)
            totals[key] = (subscriptions, connections)
        if dead:
            pipe = redis.pipeline(transaction=False)
            for key, other in dead:
                pipe.hdel(self._hash + key, other)
            await pipe.execute()
        return totals

    async def _alive_among(self, processes: set[str]) -> set[str]:
        if not processes:
            return set()
        ordered = sorted(processes)
        pipe = self._redis().pipeline(transaction=False)
        for other in ordered:
            pipe.exists(self._alive + other)
        return {other for other, live in zip(ordered, await pipe.execute(), strict=True) if live}

    async def other_members(self, process: str, key: str) -> dict[str, str]:
        held: dict[bytes, bytes] = await self._redis().hgetall(self._members + key)
        owners = {field.decode().split(" ", 1)[0] for field in held}
        alive = await self._alive_among(owners - {process})
        members: dict[str, str] = {}
        dead: list[bytes] = []
        for field, text in held.items():
            owner, connection = field.decode().split(" ", 1)
            if owner in alive:
                members[connection] = text.decode()
            elif owner != process:
                dead.append(field)
        if dead:
            await self._redis().hdel(self._members + key, *dead)
        return members


def store_for_layer() -> OccupancyStore:
    """The store the channel layer implies: Redis behind channels_redis, else this process alone."""
    layer = get_channel_layer()
    if layer is None or isinstance(layer, InMemoryChannelLayer) or not hasattr(layer, "connection"):
        return OccupancyStore()
    return RedisOccupancyStore(layer)


def event_for(occupancy: Occupancy, extra: dict[str, Any] | None = None) -> str:
    """The JSON text of one presence-channel event (PROTOCOL §12)."""
    payload: dict[str, Any] = {"type": "occupancy", **occupancy.as_dict()}
    if extra:
        payload.update(extra)
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def channel_of(key: str) -> str:
    """The canonical path of a subscription key (``ns/a/*`` → ``/ns/a/*``)."""
    return "/" + key
