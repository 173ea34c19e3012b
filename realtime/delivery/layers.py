"""The channel layer for several processes: channels_redis's, with pools that follow a Sentinel master.

``CHANNEL_LAYERS = {"default": {"BACKEND": "realtime.delivery.layers.RedisChannelLayer",
"CONFIG": {"hosts": [channel_layer_host(url)]}}}`` (:mod:`realtime.core.redis_urls`). For one
Redis server it is channels_redis's ``RedisChannelLayer`` unchanged. For a host entry naming a
master behind Sentinel (``sentinels`` and ``master_name``), channels_redis's own pool asks the
Sentinels only when it opens a connection, so after a manual failover its open connections kept
writing to the demoted master; this layer's pools ask again every second
(:func:`realtime.store.redis.async_sentinel_pool`).

Two methods beside channels_redis's API serve the bridge's fan-out (:mod:`realtime.delivery.bridge`),
which sends many groups' events at once: :meth:`RedisChannelLayer.group_members` reads the members
of every group of a batch in one pipelined round trip, and :meth:`RedisChannelLayer.send_many` puts
one message on each of many channels in one Lua call. channels_redis's ``group_send`` makes four
round trips per group (expire members, read them, expire each channel's old messages, push), and
every message it pushes is one more receive (two round trips) for its reader: a loop pass
publishing to a thousand private channels cost thousands of round trips where it now costs two,
and each receiving process reads one message per batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer  # type: ignore[import-untyped]

from realtime.store.redis import async_sentinel_pool

logger = logging.getLogger(__name__)

# KEYS: the channels' sorted sets. ARGV: the messages, then each channel's capacity, then the
# score (the send's time), then the expiry in seconds. channels_redis's own send, per key:
# drop expired messages, push unless the channel is full, renew the key's expiry.
_SEND_MANY = """
local n = #KEYS
local now = tonumber(ARGV[2 * n + 1])
local expiry = tonumber(ARGV[2 * n + 2])
local full = 0
for i = 1, n do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, math.floor(now) - expiry)
    if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[n + i]) then
        redis.call('ZADD', KEYS[i], ARGV[2 * n + 1], ARGV[i])
        redis.call('EXPIRE', KEYS[i], expiry)
    else
        full = full + 1
    end
end
return full
"""


class RedisChannelLayer(ChannelsRedisLayer):  # type: ignore[misc]  # channels_redis is untyped
    def create_pool(self, index: int) -> Any:
        host = dict(self.hosts[index])
        master_name = host.pop("master_name", None)
        if master_name is None:
            return super().create_pool(index)
        sentinels = [tuple(address) for address in host.pop("sentinels")]
        sentinel_kwargs = host.pop("sentinel_kwargs", None)
        return async_sentinel_pool(master_name, sentinels, sentinel_kwargs, **host)

    async def _clean_receive_backup(self, index: int, channel: str) -> None:
        # channels_redis runs this as a task nobody awaits, right after a receive: when Redis
        # goes away just then, asyncio logged "Task exception was never retrieved" with a
        # traceback. The message stays in the receive backup, which channels_redis restores on
        # the next receive: it arrives twice (docs/DEPLOYMENT.md, "Redis Sentinel").
        from redis.exceptions import ConnectionError, TimeoutError

        try:
            await super()._clean_receive_backup(index, channel)
        except (ConnectionError, TimeoutError) as exc:
            logger.warning("channel layer could not clear a received message from its backup: %s", exc)

    async def group_members(self, groups: Sequence[str]) -> dict[str, list[str]]:
        """The channels of each group, expired members dropped: one round trip per Redis host.

        What ``group_send`` reads before it sends; a channel that joined a group
        before this call is among its members.
        """
        by_index: dict[int, list[str]] = {}
        for group in groups:
            by_index.setdefault(self.consistent_hash(group), []).append(group)
        cutoff = int(time.time()) - int(self.group_expiry)
        members: dict[str, list[str]] = {}
        for index, names in by_index.items():
            pipe = self.connection(index).pipeline(transaction=False)
            for group in names:
                key = self._group_key(group)
                pipe.zremrangebyscore(key, min=0, max=cutoff)
                pipe.zrange(key, 0, -1)
            replies = await pipe.execute()
            for group, channels in zip(names, replies[1::2], strict=True):
                members[group] = [channel.decode() for channel in channels]
        return members

    async def send_many(self, messages: Mapping[str, dict[str, Any]]) -> int:
        """Send each channel its message: one Lua call per Redis host.

        Like :meth:`send` per channel, except that a full channel is skipped (and
        counted, and logged) as ``group_send`` skips it, instead of raising
        ``ChannelFull``. Returns how many were skipped.
        """
        by_index: dict[int, tuple[list[str], list[bytes], list[int]]] = {}
        for channel, message in messages.items():
            assert "__asgi_channel__" not in message
            non_local = channel
            if "!" in channel:
                message = {**message, "__asgi_channel__": channel}
                non_local = self.non_local_name(channel)
            keys, payloads, capacities = by_index.setdefault(self.consistent_hash(non_local), ([], [], []))
            keys.append(self.prefix + non_local)
            payloads.append(self.serialize(message))
            capacities.append(self.get_capacity(channel))
        full = 0
        for index, (keys, payloads, capacities) in by_index.items():
            # Later than any message this layer sent before, so a reader gets them in order.
            score = self._last_score = max(time.time(), getattr(self, "_last_score", 0.0) + 1e-6)
            full += int(
                await self.connection(index).eval(
                    _SEND_MANY, len(keys), *keys, *payloads, *capacities, repr(score), int(self.expiry)
                )
            )
        if full:
            logger.info("%s of %s channels over capacity: their messages were dropped", full, len(messages))
        return full
