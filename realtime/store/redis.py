"""Redis clients for a URL of :mod:`realtime.core.redis_urls`: one server, or a master behind Sentinel.

Every Redis client of ``realtime`` is made here: the shared rate limits' and the
history's (:func:`async_client`), the channel layer's pools
(:func:`async_sentinel_pool`, through :mod:`realtime.delivery.layers`) and the
Django cache's (:class:`CacheConnectionPool`).

Behind Sentinel, a pool asks a Sentinel where the master is on every new
connection, and at most every :data:`MASTER_CHECK_INTERVAL` while its
connections stay open. A command on a connection to a master that died fails
(the caller refuses or retries, as its own contract says) and the connection is
dropped, so the next command connects to whichever master the Sentinels name by
then; connections to a master the Sentinels no longer name are closed as soon as
the pool hears of it. No restart is needed after a failover (docs/DEPLOYMENT.md,
"Redis Sentinel").

redis-py is imported inside the functions: the embedded default runs without it.
"""

from __future__ import annotations

import functools
import math
import time
from typing import Any

from realtime.core.redis_urls import parse_redis_url

# How often a pool asks a Sentinel where the master is while its connections stay open (besides
# on every new connection): the longest a process goes on writing to a demoted master.
MASTER_CHECK_INTERVAL = 1.0


def async_client(url: str, *, max_connections: int | None = None) -> Any:
    """A ``redis.asyncio.Redis`` for ``url``, bound to the event loop that first uses it.

    ``max_connections``: at most that many connections, and callers beyond them
    wait for one (a blocking pool), instead of opening one each.

    Raises:
        ValueError: ``url`` is not a Redis URL (system checks E023, E024 report it first).
    """
    from redis.asyncio import BlockingConnectionPool, Redis

    target = parse_redis_url(url)
    if isinstance(target, str):
        if max_connections is None:
            return Redis.from_url(target)
        return Redis(connection_pool=BlockingConnectionPool.from_url(target, max_connections=max_connections))
    options = target.connection_kwargs()
    if max_connections is not None:
        options["max_connections"] = max_connections
    pool = async_sentinel_pool(
        target.master_name,
        list(target.sentinels),
        target.sentinel_kwargs(),
        blocking=max_connections is not None,
        **options,
    )
    return Redis(connection_pool=pool)


def async_sentinel_pool(
    master_name: str,
    sentinels: list[tuple[str, int]],
    sentinel_kwargs: dict[str, Any] | None,
    *,
    blocking: bool = False,
    **connection_kwargs: Any,
) -> Any:
    """A pool of connections to the master the Sentinels name, that follows it (see the module)."""
    from redis.asyncio.sentinel import Sentinel

    following, blocking_following = _async_pool_classes()
    sentinel = Sentinel(sentinels, sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    pool_class = blocking_following if blocking else following
    return pool_class(master_name, sentinel, **connection_kwargs)


@functools.cache
def _async_pool_classes() -> tuple[type[Any], type[Any]]:
    from redis.asyncio import BlockingConnectionPool
    from redis.asyncio.sentinel import SentinelConnectionPool
    from redis.exceptions import ConnectionError as RedisConnectionError

    class FollowingSentinelConnectionPool(SentinelConnectionPool):
        """redis-py's Sentinel pool, which also asks where the master is while it stays connected.

        redis-py asks only when a connection opens. After a manual failover
        (``SENTINEL FAILOVER``) the old master keeps answering as a master until
        Sentinel demotes it, seconds later (11 s measured): open connections went
        on writing there, and what they wrote was lost when it was demoted. Here
        the pool asks at most every ``MASTER_CHECK_INTERVAL``: when the answer
        changes, idle connections are closed (redis-py does that), and so is each
        connection in use, once it comes back to the pool.
        """

        _checked_at = -math.inf

        async def get_connection(self, *args: Any, **options: Any) -> Any:
            await self._follow_master()
            # Passed on only as given: redis-py 5.3 deprecates every argument, and warned on each call.
            return await super().get_connection(*args, **options)

        async def release(self, connection: Any) -> None:
            if self.master_address is not None and (connection.host, connection.port) != self.master_address:
                await connection.disconnect()
            await super().release(connection)

        async def _follow_master(self) -> None:
            now = time.monotonic()
            if now - self._checked_at < MASTER_CHECK_INTERVAL:
                return
            self._checked_at = now
            try:
                await self.get_master_address()  # type: ignore[no-untyped-call]
            except RedisConnectionError:
                # No master named now (a failover under way): the connection's own command says so.
                pass

    class BlockingFollowingSentinelConnectionPool(FollowingSentinelConnectionPool, BlockingConnectionPool):
        """The same, and callers beyond ``max_connections`` wait for a free connection."""

    return FollowingSentinelConnectionPool, BlockingFollowingSentinelConnectionPool


@functools.cache
def _sync_pool_class() -> type[Any]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.sentinel import SentinelConnectionPool

    class FollowingSentinelConnectionPool(SentinelConnectionPool):
        """The synchronous twin of the async pool above (redis-py already closes, on release,
        a connection to a master that is no longer the master)."""

        _checked_at = -math.inf

        def get_connection(self, command_name: Any = None, *keys: Any, **options: Any) -> Any:
            now = time.monotonic()
            if now - self._checked_at >= MASTER_CHECK_INTERVAL:
                self._checked_at = now
                try:
                    self.get_master_address()  # type: ignore[no-untyped-call]
                except RedisConnectionError:
                    pass
            return super().get_connection(command_name, *keys, **options)

    return FollowingSentinelConnectionPool


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
        from redis.sentinel import Sentinel

        target = parse_redis_url(url)
        if isinstance(target, str):
            return ConnectionPool.from_url(target, **options)
        sentinels = list(target.sentinels)
        sentinel = Sentinel(sentinels, sentinel_kwargs=target.sentinel_kwargs())  # type: ignore[no-untyped-call]
        options = {**target.connection_kwargs(), **options}
        return _sync_pool_class()(target.master_name, sentinel, **options)
