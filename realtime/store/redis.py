"""Redis clients for a URL of :mod:`realtime.core.redis_urls`: one server, or a master behind Sentinel.

Every Redis client of ``realtime`` is made here (the shared rate limits, the
history streams), and so is the Django cache's pool (:class:`CacheConnectionPool`);
the channel layer's pools are channels_redis's own, from
:func:`realtime.core.redis_urls.channel_layer_host`.

Behind Sentinel, each new connection asks a Sentinel where the master is. A
connection to a master that died fails its command (the caller sees the error
and retries, or refuses, as its own contract says), and is dropped, so the next
command connects again, to whichever master the Sentinels name by then; one
to a master that Sentinel demoted to a replica fails its next write with
``READONLY`` and is dropped likewise (redis-py's ``SentinelManagedConnection``).
No restart is needed after a failover (docs/DEPLOYMENT.md, "Redis Sentinel").

redis-py is imported inside the functions: the embedded default runs without it.
"""

from __future__ import annotations

import functools
from typing import Any

from realtime.core.redis_urls import parse_redis_url


def async_client(url: str, *, max_connections: int | None = None) -> Any:
    """A ``redis.asyncio.Redis`` for ``url``, bound to the event loop that first uses it.

    ``max_connections``: at most that many connections, and callers beyond them
    wait for one (a blocking pool), instead of opening one each.

    Raises:
        ValueError: ``url`` is not a Redis URL (system checks E023, E024 report it first).
    """
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool

    target = parse_redis_url(url)
    if isinstance(target, str):
        if max_connections is None:
            return Redis.from_url(target)
        return Redis(connection_pool=BlockingConnectionPool.from_url(target, max_connections=max_connections))
    sentinel = Sentinel(list(target.sentinels), sentinel_kwargs=target.sentinel_kwargs())  # type: ignore[no-untyped-call]
    options = target.connection_kwargs()
    pool_class: type[Any] = SentinelConnectionPool
    if max_connections is not None:
        pool_class = _blocking_sentinel_pool_class()
        options["max_connections"] = max_connections
    return Redis(connection_pool=pool_class(target.master_name, sentinel, **options))


@functools.cache
def _blocking_sentinel_pool_class() -> type[Any]:
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.sentinel import SentinelConnectionPool

    class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
        """Sentinel's master lookup on connect; BlockingConnectionPool's wait for a free connection."""

    return BlockingSentinelConnectionPool


class CacheConnectionPool:
    """Django's ``RedisCache`` pool for any URL of :mod:`realtime.core.redis_urls`.

    ``CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
    "LOCATION": [url], "OPTIONS": {"pool_class": "realtime.store.redis.CacheConnectionPool"}}}``.
    ``LOCATION`` must be a list: Django splits a string at commas, and a
    Sentinel URL lists its Sentinels with commas. The cache's client is
    synchronous, so the pool is redis-py's synchronous one.
    """

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Any:
        from redis import ConnectionPool
        from redis.sentinel import Sentinel, SentinelConnectionPool

        target = parse_redis_url(url)
        if isinstance(target, str):
            return ConnectionPool.from_url(target, **options)
        sentinels = list(target.sentinels)
        sentinel = Sentinel(sentinels, sentinel_kwargs=target.sentinel_kwargs())  # type: ignore[no-untyped-call]
        options = {**target.connection_kwargs(), **options}
        return SentinelConnectionPool(target.master_name, sentinel, **options)  # type: ignore[no-untyped-call]
