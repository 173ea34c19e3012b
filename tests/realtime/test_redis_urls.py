"""Redis URLs: one server or a master behind Sentinel (realtime.core.redis_urls), and their clients."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as aiosentinel
import redis.sentinel

from realtime.core.redis_urls import (
    CONNECT_TIMEOUT,
    SENTINEL_TIMEOUT,
    SentinelTarget,
    channel_layer_host,
    parse_redis_url,
)
from realtime.store.redis import CacheConnectionPool, async_client

SENTINEL_SOCKETS = {"socket_timeout": SENTINEL_TIMEOUT, "socket_connect_timeout": SENTINEL_TIMEOUT}


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:6379/0",
        "redis://:secret@cache.internal:6380/3",
        "rediss://user:pw@cache.internal:6380",
        "unix:///run/redis.sock?db=2",
        "REDIS://upper.case/1",
    ],
)
def test_a_single_server_url_is_kept_as_it_is(url: str) -> None:
    assert parse_redis_url(url) == url
    assert channel_layer_host(url) == url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,sentinel-3/main/2",
            SentinelTarget((("10.0.0.1", 26379), ("10.0.0.2", 26380), ("sentinel-3", 26379)), "main", 2),
        ),
        ("redis+sentinel://s1/main", SentinelTarget((("s1", 26379),), "main", 0)),
        ("redis+sentinel://s1/main/", SentinelTarget((("s1", 26379),), "main", 0)),
        ("redis+sentinel://[::1]:26390/main/1", SentinelTarget((("::1", 26390),), "main", 1)),
        (
            "redis+sentinel://:p%40ss@s1:1,s2:2/main/0",
            SentinelTarget((("s1", 1), ("s2", 2)), "main", 0, None, "p@ss"),
        ),
        ("redis+sentinel://app:pw@s1/main", SentinelTarget((("s1", 26379),), "main", 0, "app", "pw")),
        ("redis+sentinel://justpw@s1/main", SentinelTarget((("s1", 26379),), "main", 0, None, "justpw")),
        (
            "redis+sentinel://s1/main/4?sentinel_password=watch",
            SentinelTarget((("s1", 26379),), "main", 4, sentinel_password="watch"),
        ),
        ("redis+sentinel://s1/my%2Fmaster", SentinelTarget((("s1", 26379),), "my/master", 0)),
    ],
)
def test_a_sentinel_url_names_the_sentinels_the_master_and_the_database(
    url: str, expected: SentinelTarget
) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("127.0.0.1:6379", "'127.0.0.1:6379' is not a URL"),
        (
            "postgres://db/x",
            "'postgres://db/x' has the scheme postgres://; expected one of "
            "redis://, rediss://, unix://, redis+sentinel://",
        ),
        (
            "redis+sentinel://s1:26379",
            "'redis+sentinel://s1:26379' names no master: add /<master name> after the Sentinels",
        ),
        (
            "redis+sentinel://s1//0",
            "'redis+sentinel://s1//0' names no master: add /<master name> after the Sentinels",
        ),
        (
            "redis+sentinel://s1/main/zero",
            "'redis+sentinel://s1/main/zero': the database 'zero' is not a number",
        ),
        (
            "redis+sentinel://s1/main/0/extra",
            "'redis+sentinel://s1/main/0/extra': expected /<master name>[/<db>] after the Sentinels",
        ),
        ("redis+sentinel://s1,,s2/main", "'redis+sentinel://s1,,s2/main' lists an empty Sentinel address"),
        ("redis+sentinel:///main", "'redis+sentinel:///main' lists an empty Sentinel address"),
        (
            "redis+sentinel://s1:port/main",
            "'redis+sentinel://s1:port/main': the Sentinel address 's1:port' is not host:port "
            "(Port could not be cast to integer value as 'port')",
        ),
        ("redis+sentinel://:1/main", "'redis+sentinel://:1/main': the Sentinel address ':1' has no host"),
        (
            "redis+sentinel://s1/main?ssl=1",
            "'redis+sentinel://s1/main?ssl=1': unknown option(s) ssl; known: sentinel_password",
        ),
    ],
)
def test_a_bad_url_is_refused_with_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError) as raised:
        parse_redis_url(url)

    assert str(raised.value) == message


def test_the_channel_layer_gets_channels_redis_sentinel_form() -> None:
    host = channel_layer_host("redis+sentinel://app:pw@s1:1,s2:2/main/3?sentinel_password=watch")

    assert host == {
        "sentinels": [("s1", 1), ("s2", 2)],
        "master_name": "main",
        "sentinel_kwargs": {**SENTINEL_SOCKETS, "password": "watch"},
        "db": 3,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "username": "app",
        "password": "pw",
    }


def test_a_url_that_does_not_parse_goes_to_the_layer_as_it_is_for_the_checks_to_report() -> None:
    assert channel_layer_host("redis+sentinel://s1") == "redis+sentinel://s1"


def test_channels_redis_makes_a_sentinel_pool_of_the_layer_host() -> None:
    from channels_redis.utils import create_pool

    pool = create_pool(channel_layer_host("redis+sentinel://s1:1,s2:2/main/3"))

    assert isinstance(pool, aiosentinel.SentinelConnectionPool)
    assert pool.service_name == "main"
    assert pool.connection_kwargs["db"] == 3
    assert [
        (s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
        for s in pool.sentinel_manager.sentinels
    ] == [("s1", 1), ("s2", 2)]


# -- the clients (nothing connects until a command is sent) ----------------------------------------


def _sentinels(manager: Any) -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (
            s.connection_pool.connection_kwargs["host"],
            s.connection_pool.connection_kwargs["port"],
            {
                k: s.connection_pool.connection_kwargs.get(k)
                for k in ("socket_timeout", "socket_connect_timeout")
            },
        )
        for s in manager.sentinels
    ]


async def test_an_async_client_for_a_sentinel_url_asks_the_sentinels_for_the_master() -> None:
    client = async_client("redis+sentinel://:pw@s1:1,s2:2/main/5")
    try:
        pool = client.connection_pool
        assert type(pool).__name__ == "FollowingSentinelConnectionPool"
        assert isinstance(pool, aiosentinel.SentinelConnectionPool)
        assert not isinstance(pool, aioredis.BlockingConnectionPool)
        assert (pool.service_name, pool.is_master) == ("main", True)
        assert pool.connection_kwargs["db"] == 5
        assert pool.connection_kwargs["password"] == "pw"
        assert _sentinels(pool.sentinel_manager) == [("s1", 1, SENTINEL_SOCKETS), ("s2", 2, SENTINEL_SOCKETS)]
    finally:
        await client.aclose()


async def test_a_bounded_async_client_waits_for_a_free_connection_behind_sentinel_too() -> None:
    client = async_client("redis+sentinel://s1:1/main", max_connections=3)
    try:
        pool = client.connection_pool
        assert isinstance(pool, aiosentinel.SentinelConnectionPool)
        assert isinstance(pool, aioredis.BlockingConnectionPool)
        assert pool.max_connections == 3
        # Both pools' state is there: the Sentinel's master lookup and the wait for a connection.
        assert pool.service_name == "main"
        assert isinstance(pool._condition, asyncio.Condition)
    finally:
        await client.aclose()


async def test_an_async_client_for_one_server_is_redis_pys_own() -> None:
    plain = async_client("redis://127.0.0.1:1/2")
    bounded = async_client("redis://127.0.0.1:1/2", max_connections=4)
    try:
        assert type(plain.connection_pool) is aioredis.ConnectionPool
        assert type(bounded.connection_pool) is aioredis.BlockingConnectionPool
        assert bounded.connection_pool.max_connections == 4
        assert plain.connection_pool.connection_kwargs["db"] == 2
    finally:
        await plain.aclose()
        await bounded.aclose()


def test_the_cache_pool_reads_both_kinds_of_url() -> None:
    plain = CacheConnectionPool.from_url("redis://127.0.0.1:1/2", socket_timeout=3)
    sentinel = CacheConnectionPool.from_url("redis+sentinel://s1:1/main/4", socket_timeout=3)

    assert type(plain) is redis.ConnectionPool
    assert plain.connection_kwargs["socket_timeout"] == 3
    assert type(sentinel).__name__ == "FollowingSentinelConnectionPool"
    assert isinstance(sentinel, redis.sentinel.SentinelConnectionPool)
    assert sentinel.service_name == "main"
    assert sentinel.connection_kwargs["db"] == 4
    assert sentinel.connection_kwargs["socket_timeout"] == 3


def test_djangos_redis_cache_takes_a_sentinel_url_in_a_list() -> None:
    from django.core.cache.backends.redis import RedisCache

    cache = RedisCache(
        ["redis+sentinel://s1:1,s2:2/main/1"],
        {"OPTIONS": {"pool_class": "realtime.store.redis.CacheConnectionPool"}},
    )
    pool = cache._cache._get_connection_pool(write=True)

    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert [s.connection_pool.connection_kwargs["port"] for s in pool.sentinel_manager.sentinels] == [1, 2]


# -- following the master while connections stay open ---------------------------------------------


class FakeSentinels:
    """Names ``master`` when asked, and counts the questions."""

    def __init__(self, master: tuple[str, int]) -> None:
        self.master = master
        self.asked = 0

    async def discover_master(self, name: str) -> tuple[str, int]:
        self.asked += 1
        return self.master


def connection_to(pool: Any, address: tuple[str, int]) -> Any:
    """A connection taken from ``pool`` as if connected to ``address`` (nothing connects)."""
    connection = pool.get_available_connection()
    connection.host, connection.port = address
    closed: list[bool] = []

    async def disconnect(*args: Any, **kwargs: Any) -> None:
        closed.append(True)

    connection.disconnect = disconnect
    connection.closed = closed
    return connection


async def test_the_pool_asks_where_the_master_is_at_most_every_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from realtime.store import redis as store_redis

    now = [100.0]
    monkeypatch.setattr(store_redis.time, "monotonic", lambda: now[0])
    pool = store_redis.async_sentinel_pool("main", [("s1", 1)], None)
    sentinels = pool.sentinel_manager = FakeSentinels(("old", 1))

    await pool._follow_master()
    await pool._follow_master()
    now[0] += store_redis.MASTER_CHECK_INTERVAL - 0.01
    await pool._follow_master()
    assert (sentinels.asked, pool.master_address) == (1, ("old", 1))
    now[0] += 0.01
    await pool._follow_master()
    assert sentinels.asked == 2


async def test_connections_to_a_demoted_master_are_closed_once_the_pool_hears_of_it() -> None:
    from realtime.store import redis as store_redis

    pool = store_redis.async_sentinel_pool("main", [("s1", 1)], None, blocking=True, max_connections=4)
    sentinels = pool.sentinel_manager = FakeSentinels(("old", 1))
    await pool._follow_master()
    idle, busy = connection_to(pool, ("old", 1)), connection_to(pool, ("old", 1))
    await pool.release(idle)
    assert idle.closed == []

    sentinels.master = ("new", 2)
    pool._checked_at = -float("inf")
    await pool._follow_master()
    # The idle one was closed by redis-py (its disconnect is the real one: check it is not connected).
    assert idle._reader is None
    # The one in use (a blocking read, say) is closed when it comes back.
    await pool.release(busy)
    assert busy.closed == [True]
    current = connection_to(pool, ("new", 2))
    await pool.release(current)
    assert current.closed == []


async def test_a_failover_under_way_does_not_fail_the_check() -> None:
    from redis.asyncio.sentinel import MasterNotFoundError

    from realtime.store import redis as store_redis

    class NoMaster:
        async def discover_master(self, name: str) -> tuple[str, int]:
            raise MasterNotFoundError("No master found for 'main'")

    pool = store_redis.async_sentinel_pool("main", [("s1", 1)], None)
    pool.sentinel_manager = NoMaster()
    await pool._follow_master()
    assert pool.master_address is None


def test_the_layer_gives_sentinel_hosts_pools_that_follow_the_master() -> None:
    from realtime.delivery.layers import RedisChannelLayer

    layer = RedisChannelLayer(
        hosts=[channel_layer_host("redis+sentinel://:pw@s1:1,s2:2/main/3"), "redis://h:6379/1"]
    )
    sentinel_pool, plain_pool = layer.create_pool(0), layer.create_pool(1)

    assert type(sentinel_pool).__name__ == "FollowingSentinelConnectionPool"
    assert (sentinel_pool.service_name, sentinel_pool.connection_kwargs["db"]) == ("main", 3)
    assert sentinel_pool.connection_kwargs["password"] == "pw"
    assert sentinel_pool.connection_kwargs["socket_connect_timeout"] == CONNECT_TIMEOUT
    assert _sentinels(sentinel_pool.sentinel_manager) == [
        ("s1", 1, SENTINEL_SOCKETS),
        ("s2", 2, SENTINEL_SOCKETS),
    ]
    assert type(plain_pool) is aioredis.ConnectionPool
    assert plain_pool.connection_kwargs["db"] == 1


async def test_a_receive_backup_that_cannot_be_cleared_is_a_warning_not_an_unretrieved_task_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from realtime.delivery.layers import RedisChannelLayer

    # Port 1 refuses: the connection breaks as a crashed master's does.
    layer = RedisChannelLayer(hosts=["redis://127.0.0.1:1/0"])
    await layer._clean_receive_backup(0, "realtime.delivery.hub.")

    [record] = [r for r in caplog.records if r.name == "realtime.delivery.layers"]
    assert record.levelname == "WARNING"
    assert record.getMessage().startswith(
        "channel layer could not clear a received message from its backup: "
    )
    await layer.close_pools()
