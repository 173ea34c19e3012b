"""The channel layer for several processes: channels_redis's, with pools that follow a Sentinel master.

``CHANNEL_LAYERS = {"default": {"BACKEND": "realtime.delivery.layers.RedisChannelLayer",
"CONFIG": {"hosts": [channel_layer_host(url)]}}}`` (:mod:`realtime.core.redis_urls`). For one
Redis server it is channels_redis's ``RedisChannelLayer`` unchanged. For a host entry naming a
master behind Sentinel (``sentinels`` and ``master_name``), channels_redis's own pool asks the
Sentinels only when it opens a connection, so after a manual failover its open connections kept
writing to the demoted master; this layer's pools ask again every second
(:func:`realtime.store.redis.async_sentinel_pool`).
"""

from __future__ import annotations

import logging
from typing import Any

from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer  # type: ignore[import-untyped]

from realtime.store.redis import async_sentinel_pool

logger = logging.getLogger(__name__)


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
