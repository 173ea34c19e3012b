"""Channel history: the streams of history-enabled namespaces, and resume positions (PROTOCOL §12).

A publication into a namespace whose ``history_size`` is above 0 is appended, by
the process that publishes it and before it is fanned out, to the stream of
every subscription key it matches (:mod:`realtime.core.history` says why per key).
Each append gives the publication its offset in that stream, which its ``data``
frames carry. Two stores keep the streams:

- :class:`RedisHistory` (``REALTIME["HISTORY_REDIS_URL"]``): one Redis Stream and
  one small hash (epoch, last offset) per key, written by one Lua call per
  publication (``XADD … MAXLEN``, ``EXPIRE``); the calls of one loop pass share
  one round trip. Every process reads the same streams.
- :class:`MemoryHistory` (the embedded default): a bounded ring per key in this
  process.

A stream keeps its last ``history_size`` publications until ``history_ttl``
seconds pass without a new one; its epoch and last offset live a day longer
(:data:`META_TTL`), so a subscriber of a quiet channel is told "nothing missed",
not "history lost". When the store loses a stream (Redis flushed or restarted
empty, a process restarted), the next read or write starts it under a new epoch.

Resume positions: when a connection closes, the position of each of its history
subscriptions is kept for ``HISTORY_RESUME_WINDOW`` seconds under a token made of
the principal, the subscription id and the key, so the same client re-subscribing
with the same id gets what it missed (:mod:`realtime.operations.subscribing`).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
import types
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from realtime.conf import realtime_settings
from realtime.core.history import Position, StreamRead, tail
from realtime.core.paths import ChannelPath
from realtime.exceptions import ServiceUnavailable
from realtime.lifecycle import lifecycle
from realtime.state import register
from realtime.store.redis import async_client

logger = logging.getLogger(__name__)

# Seconds a stream's epoch and last offset outlive its publications.
META_TTL = 86_400


def new_epoch() -> str:
    return secrets.token_hex(8)


def resume_token(principal: str, subscription_id: str, key: str) -> str:
    """Names one subscription of one client across its connections."""
    return hashlib.sha256(f"{principal}\n{subscription_id}\n{key}".encode()).hexdigest()[:32]


class HistoryStore(Protocol):
    async def append(
        self, keys: Sequence[str], events: Sequence[str], size: int, ttl: int
    ) -> list[tuple[int, str]]:
        """Append encoded events to the stream of each key; the first new offset and the epoch of each."""
        ...

    async def read(self, key: str, since: int | None, limit: int) -> StreamRead:
        """The stream's epoch and ends, and up to ``limit`` entries after offset ``since``."""
        ...

    async def remember(self, token: str, position: Position, window: float) -> None: ...

    async def recall(self, token: str) -> Position | None:
        """The position kept under ``token``, once: recalling forgets it."""
        ...


class Appended(NamedTuple):
    """A publication's place in the streams it was appended to."""

    # Each key's events with their offsets, as its subscribers' data frames carry them.
    tails: dict[str, list[str]]
    # Each key's epoch: the hub tells a late copy of a publication from a restarted stream by it.
    epochs: dict[str, str]


def appended(keys: Sequence[str], events: Sequence[str], starts: Sequence[tuple[int, str]]) -> Appended:
    """What a store's append returned (each key's first offset and epoch), per key."""
    return Appended(
        {
            key: [tail(event, first + i) for i, event in enumerate(events)]
            for key, (first, _) in zip(keys, starts, strict=True)
        },
        {key: epoch for key, (_, epoch) in zip(keys, starts, strict=True)},
    )


# -- in this process --------------------------------------------------------------


@dataclass(slots=True)
class _Ring:
    epoch: str
    size: int
    top: int = 0
    entries: deque[tuple[int, str]] = field(default_factory=deque)
    # Monotonic times: the entries are dropped after the first, the stream after the second.
    entries_until: float = 0.0
    until: float = 0.0


class MemoryHistory:
    """Streams in this process: a bounded ring per key."""

    def __init__(self) -> None:
        self._rings: dict[str, _Ring] = {}
        self._resume: dict[str, tuple[Position, float]] = {}

    def clear(self) -> None:
        self._rings.clear()
        self._resume.clear()

    def _ring(self, key: str, size: int, now: float) -> _Ring:
        ring = self._rings.get(key)
        if ring is None or now >= ring.until:
            ring = self._rings[key] = _Ring(new_epoch(), size, until=now + META_TTL)
            self._sweep(now)
        elif now >= ring.entries_until:
            ring.entries.clear()
        if ring.size != size:
            ring.size = size
            while len(ring.entries) > size:
                ring.entries.popleft()
        return ring

    def _sweep(self, now: float) -> None:
        # Called when a stream is made: the dict never holds many more dead streams than live ones.
        if len(self._rings) % 1024 == 0:
            for key in [k for k, ring in self._rings.items() if now >= ring.until]:
                del self._rings[key]
            for token in [t for t, (_, until) in self._resume.items() if now >= until]:
                del self._resume[token]

    async def append(
        self, keys: Sequence[str], events: Sequence[str], size: int, ttl: int
    ) -> list[tuple[int, str]]:
        now = time.monotonic()
        starts = []
        for key in keys:
            ring = self._ring(key, size, now)
            starts.append((ring.top + 1, ring.epoch))
            for event in events:
                ring.top += 1
                ring.entries.append((ring.top, event))
                if len(ring.entries) > size:
                    ring.entries.popleft()
            ring.entries_until = now + ttl
            ring.until = now + max(ttl, META_TTL)
        return starts

    async def read(self, key: str, since: int | None, limit: int) -> StreamRead:
        now = time.monotonic()
        ring = self._rings.get(key)
        if ring is None or now >= ring.until:
            ring = self._rings[key] = _Ring(new_epoch(), 0, until=now + META_TTL)
        elif now >= ring.entries_until:
            ring.entries.clear()
        first = ring.entries[0][0] if ring.entries else None
        entries: list[tuple[int, str]] = []
        if since is not None and first is not None:
            start = max(since + 1 - first, 0)
            entries = [ring.entries[i] for i in range(start, min(start + limit, len(ring.entries)))]
        return StreamRead(ring.epoch, ring.top, first, entries)

    async def remember(self, token: str, position: Position, window: float) -> None:
        self._resume[token] = (position, time.monotonic() + window)

    async def recall(self, token: str) -> Position | None:
        kept = self._resume.pop(token, None)
        if kept is None or time.monotonic() >= kept[1]:
            return None
        return kept[0]


# -- in Redis ------------------------------------------------------------------------

# KEYS: meta, stream pairs. ARGV: size, ttl, meta ttl, a new epoch, n, n events.
# A missing meta means a lost stream: it restarts, empty, under the new epoch.
# Returns each key's first new offset and epoch, flat: {first, epoch, first, epoch, …}.
_APPEND = """
local size, ttl, meta_ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local new_epoch, n = ARGV[4], tonumber(ARGV[5])
local starts = {}
for k = 1, #KEYS, 2 do
  local meta, stream = KEYS[k], KEYS[k + 1]
  local epoch = redis.call('HGET', meta, 'e')
  if not epoch then
    epoch = new_epoch
    redis.call('HSET', meta, 'e', epoch)
    redis.call('DEL', stream)
  end
  local top = redis.call('HINCRBY', meta, 't', n)
  local first = top - n + 1
  for i = 1, n do
    redis.call('XADD', stream, 'MAXLEN', size, (first + i - 1) .. '-0', 'd', ARGV[5 + i])
  end
  redis.call('EXPIRE', stream, ttl)
  redis.call('EXPIRE', meta, meta_ttl)
  starts[#starts + 1] = first
  starts[#starts + 1] = epoch
end
return starts
"""

# KEYS: meta, stream. ARGV: since (-1: none), count, meta ttl, a new epoch.
_READ = """
local epoch = redis.call('HGET', KEYS[1], 'e')
if not epoch then
  epoch = ARGV[4]
  redis.call('HSET', KEYS[1], 'e', epoch, 't', 0)
  redis.call('EXPIRE', KEYS[1], tonumber(ARGV[3]))
  redis.call('DEL', KEYS[2])
  return {epoch, 0, '', {}}
end
local top = tonumber(redis.call('HGET', KEYS[1], 't') or '0')
local oldest = redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', 1)
local first = ''
if #oldest > 0 then first = oldest[1][1] end
local since = tonumber(ARGV[1])
local entries = {}
if since >= 0 and since < top then
  entries = redis.call('XRANGE', KEYS[2], (since + 1) .. '-0', '+', 'COUNT', tonumber(ARGV[2]))
end
return {epoch, top, first, entries}
"""


def _keys(key: str) -> tuple[str, str]:
    # The namespace as a hash tag: a publication's keys share a Redis Cluster slot.
    namespace, _, rest = key.partition("/")
    base = f"rt:h:{{{namespace}}}:{rest}"
    return base + ":m", base + ":s"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@dataclass(slots=True)
class _Call:
    script: Any
    keys: list[str]
    args: list[Any]
    done: asyncio.Future[Any]


class RedisHistory:
    """Streams in Redis, shared by every process; one client per event loop.

    Every script call of one loop pass goes out in one pipeline, in call order: a burst of
    publications costs one round trip (and this process fans out each stream's publications
    in offset order), and a crowd re-subscribing at once shares a few connections, not one each.
    """

    def __init__(self, url: str) -> None:
        # One server, or the master behind Sentinel (a failover needs no restart).
        self._redis: Any = async_client(url)
        self._append = self._redis.register_script(_APPEND)
        self._read = self._redis.register_script(_READ)
        self._pending: list[_Call] = []
        self._runner: asyncio.Task[None] | None = None

    async def _call(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._pending.append(_Call(script, keys, args, done))
        if self._runner is None:
            self._runner = loop.create_task(self._run())
        return await done

    async def _run(self) -> None:
        try:
            await asyncio.sleep(0)  # let the rest of this loop pass join the pipeline
            while self._pending:
                batch, self._pending = self._pending, []
                pipe = self._redis.pipeline(transaction=False)
                try:
                    for call in batch:
                        await call.script(keys=call.keys, args=call.args, client=pipe)
                    results = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    results = [exc] * len(batch)
                for call, result in zip(batch, results, strict=True):
                    if call.done.done():
                        continue
                    if isinstance(result, Exception):
                        call.done.set_exception(result)
                    else:
                        call.done.set_result(result)
        finally:
            self._runner = None

    async def append(
        self, keys: Sequence[str], events: Sequence[str], size: int, ttl: int
    ) -> list[tuple[int, str]]:
        redis_keys = [name for key in keys for name in _keys(key)]
        args = [size, ttl, max(ttl, META_TTL), new_epoch(), len(events), *events]
        starts = await self._call(self._append, redis_keys, args)
        return [(int(starts[i]), _text(starts[i + 1])) for i in range(0, len(starts), 2)]

    async def read(self, key: str, since: int | None, limit: int) -> StreamRead:
        args = [-1 if since is None else since, limit, META_TTL, new_epoch()]
        epoch, top, first, entries = await self._call(self._read, list(_keys(key)), args)
        return StreamRead(
            _text(epoch),
            int(top),
            int(_text(first).split("-")[0]) if first else None,
            [(int(_text(entry_id).split("-")[0]), _text(fields[1])) for entry_id, fields in entries],
        )

    async def aclose(self) -> None:
        await self._redis.aclose()

    async def remember(self, token: str, position: Position, window: float) -> None:
        value = f"{position.offset}:{position.epoch}"
        await self._redis.set(f"rt:h:resume:{token}", value, px=max(int(window * 1000), 1))

    async def recall(self, token: str) -> Position | None:
        value = await self._redis.getdel(f"rt:h:resume:{token}")
        if value is None:
            return None
        offset, _, epoch = _text(value).partition(":")
        return Position(int(offset), epoch)


# -- the store of this process ---------------------------------------------------------


class _Stores:
    """The store the settings name: one in memory, or one Redis client per event loop."""

    def __init__(self) -> None:
        self.memory = MemoryHistory()
        self._redis: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisHistory] = (
            weakref.WeakKeyDictionary()
        )

    def clear(self) -> None:
        self.memory.clear()
        self._redis = weakref.WeakKeyDictionary()

    async def aclose(self) -> None:
        """Close the running loop's Redis client, if it has one."""
        store = self._redis.pop(asyncio.get_running_loop(), None)
        if store is not None:
            await store.aclose()

    def current(self) -> HistoryStore:
        url = realtime_settings.history_redis_url
        if url is None:
            return self.memory
        loop = asyncio.get_running_loop()
        store = self._redis.get(loop)
        if store is None:
            store = self._redis[loop] = RedisHistory(url)
            _close_before(loop, store)
        return store


def _close_before(loop: asyncio.AbstractEventLoop, store: RedisHistory) -> None:
    """Close ``store``'s connections when ``loop`` closes (as channels_redis does for its pools).

    A loop that ends (a sync caller's private loop, a test's) would otherwise leave them open.
    """
    close = loop.close

    def closing(self: asyncio.AbstractEventLoop) -> None:
        self.close = close  # type: ignore[method-assign]
        if not self.is_running():
            try:
                self.run_until_complete(store.aclose())
            except Exception as exc:
                logger.debug("realtime history could not close its Redis client: %s", exc)
        close()

    loop.close = types.MethodType(closing, loop)  # type: ignore[method-assign]


stores = register(_Stores())
lifecycle.on_new_loop("history", stores.memory.clear)


def history() -> HistoryStore:
    """The history store of the running event loop."""
    return stores.current()


async def history_append(path: ChannelPath, events: list[str], *, size: int, ttl: int) -> Appended:
    """Give a publication its offsets: each matching key's events, as its data frames carry them,
    and each key's epoch.

    Raises:
        ServiceUnavailable: the store could not take them; nobody gets them.
    """
    keys = path.matching_keys()
    try:
        if lifecycle.owned_elsewhere():
            # Sync code's private loop: append on the loop that owns the store's client.
            owner = lifecycle.loop
            assert owner is not None
            future = asyncio.run_coroutine_threadsafe(_append(keys, events, size, ttl), owner)
            starts = await asyncio.wrap_future(future)
        else:
            starts = await _append(keys, events, size, ttl)
    except Exception as exc:
        logger.warning("realtime history could not append to %s: %s", path.path, exc)
        raise ServiceUnavailable() from exc
    return appended(keys, events, starts)


async def _append(keys: Sequence[str], events: Sequence[str], size: int, ttl: int) -> list[tuple[int, str]]:
    return await history().append(keys, events, size, ttl)
