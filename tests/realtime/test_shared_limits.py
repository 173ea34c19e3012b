"""Who a request comes from, when the process counts as behind, and rates shared through Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from django.test import override_settings

from realtime.auth.limits import RateLimiter
from realtime.core.rates import parse_limit
from realtime.transport.clients import client_address, client_ip
from realtime.transport.overload import Overload

REPO_ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13"
PROXIES = {"TRUSTED_PROXY_HEADER": "X-Forwarded-For", "TRUSTED_PROXIES": ["10.0.0.0/8"]}


def scope(peer: str, forwarded: str | None = None) -> dict[str, object]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded is not None else []
    return {"client": (peer, 1234), "headers": headers}


@pytest.mark.parametrize(
    ("front_door", "peer", "forwarded", "expected"),
    [
        # No header configured: the peer, whatever the request claims.
        ({}, "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # A trusted proxy: the last address it did not add.
        (PROXIES, "10.0.0.5", "198.51.100.1", "198.51.100.1"),
        (PROXIES, "10.0.0.5", "6.6.6.6, 198.51.100.1, 10.0.0.7", "198.51.100.1"),
        # A peer that is not our proxy forged the header: ignored.
        (PROXIES, "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # Only proxies in the chain, or garbage: the peer.
        (PROXIES, "10.0.0.5", "10.0.0.6", "10.0.0.5"),
        (PROXIES, "10.0.0.5", "", "10.0.0.5"),
        # IPv6 clients count per /64.
        ({}, "2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2::"),
    ],
)
def test_the_client_address_believes_only_trusted_proxies(front_door, peer, forwarded, expected) -> None:
    with override_settings(REALTIME={"FRONT_DOOR": front_door}):
        assert client_address(scope(peer, forwarded)) == expected


@pytest.mark.parametrize(
    ("front_door", "peer", "forwarded", "expected"),
    [
        # The client's own address (sourceIp, failed authorizations): IPv6 whole, not per /64.
        ({}, "2001:db8:1:2:3:4:5:6", None, "2001:db8:1:2:3:4:5:6"),
        (PROXIES, "10.0.0.5", "2001:db8::9", "2001:db8::9"),
        # A forged header from a peer that is not our proxy: the peer.
        (PROXIES, "203.0.113.9", "198.51.100.1", "203.0.113.9"),
        # No peer at all (a server that gives none): nothing.
        (PROXIES, "", "198.51.100.1", ""),
    ],
)
def test_the_client_ip_is_the_address_behind_trusted_proxies_unmasked(
    front_door, peer, forwarded, expected
) -> None:
    with override_settings(REALTIME={"FRONT_DOOR": front_door}):
        request_scope = scope(peer, forwarded) if peer else {"client": None, "headers": []}
        assert client_ip(request_scope) == expected


BOUNDS = {"MIN_IN_FLIGHT": 4, "MAX_IN_FLIGHT": 100, "MAX_LOOP_LAG": 0.2, "MAX_QUEUE_DELAY": 0.5}


class Clock:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 100.0
        monkeypatch.setattr("realtime.transport.overload.time.monotonic", lambda: self.now)


def window(load: Overload, clock: Clock, *, requests: int, seconds: float) -> None:
    """``requests`` run together for ``seconds`` each; then the next window begins."""
    starts = [load.started() for _ in range(requests)]
    clock.now += seconds
    for started in starts:
        load.finished(started)
    clock.now += 0.1


def test_the_limit_shrinks_while_requests_queue_and_never_below_the_floor(monkeypatch) -> None:
    load, clock = Overload(), Clock(monkeypatch)
    with override_settings(REALTIME={"FRONT_DOOR": BOUNDS}):
        window(load, clock, requests=50, seconds=0.01)  # the first window only starts the count
        limits = []
        for _ in range(20):
            window(load, clock, requests=10, seconds=0.8)
            limits.append(load.current_limit())
        assert limits[:4] == [100, 80, 64, 51]  # each window is judged as the next one begins
        assert limits[-1] == 4
        assert load.admits()  # 0 under way: the floor lets work in
        running = [load.started() for _ in range(4)]
        assert not load.admits()
        for started in running:
            load.finished(started)


def test_the_limit_grows_back_while_requests_are_fast_and_busy(monkeypatch) -> None:
    load, clock = Overload(), Clock(monkeypatch)
    with override_settings(REALTIME={"FRONT_DOOR": BOUNDS}):
        load.limit = 10.0
        for _ in range(4):
            window(load, clock, requests=load.current_limit(), seconds=0.01)
        grown = load.current_limit()
        for _ in range(5):
            window(load, clock, requests=1, seconds=0.01)  # hardly used: no reason to grow
        # Each window is judged as the next one begins: the last busy one still counts once.
        assert (grown, load.current_limit()) == (13, 14)


def test_a_late_loop_holds_back_connects_but_not_the_admitted_work(monkeypatch) -> None:
    load, clock = Overload(), Clock(monkeypatch)
    with override_settings(REALTIME={"FRONT_DOOR": BOUNDS}):
        window(load, clock, requests=1, seconds=0.01)
        load.lag = 0.3
        window(load, clock, requests=60, seconds=0.01)
        assert (load.current_limit(), load.on_time()) == (100, False)


@pytest.fixture
def redis_url() -> str:
    try:
        with redis.Redis.from_url(REDIS_URL, socket_timeout=1) as client:
            client.ping()
    except redis.RedisError:
        if os.environ.get("REDIS_URL"):
            raise  # the Redis pass of bin/test: never skipped
        pytest.skip(f"Redis does not answer at {REDIS_URL}")
    return REDIS_URL


async def test_two_limiters_on_one_redis_share_one_budget(redis_url: str) -> None:
    key = f"test:{uuid.uuid4().hex}"
    limit = parse_limit("10/m burst 5")
    first, second = RateLimiter(), RateLimiter()  # as two processes hold them
    with override_settings(REALTIME={"LIMITS_REDIS_URL": redis_url}):
        waits = [await limiter.take([(key, limit)]) for limiter in (first, second) * 4]
    await first.aclose()
    await second.aclose()
    assert [wait == 0 for wait in waits] == [True] * 5 + [False] * 3
    assert all(5.5 < wait <= 6.0 for wait in waits[5:])
    assert (first.fallbacks, second.fallbacks) == (0, 0)


async def test_a_redis_that_does_not_answer_falls_back_to_this_process() -> None:
    limiter = RateLimiter()
    with override_settings(REALTIME={"LIMITS_REDIS_URL": "redis://127.0.0.1:1/0"}):
        waits = [await limiter.take([("k", parse_limit("1/m"))]) for _ in range(2)]
    await limiter.aclose()
    assert waits[0] == 0 and waits[1] > 0
    assert limiter.fallbacks == 2


PROCESS = """
import asyncio, json, sys, django
django.setup()
from django.test import override_settings
from realtime.auth.limits import rate_limiter
from realtime.core.rates import parse_limit

async def main():
    key = sys.argv[2]
    checks = [(key + ":client", parse_limit("1000/s")), (key + ":all", parse_limit("1/m burst 40"))]
    with override_settings(REALTIME={"LIMITS_REDIS_URL": sys.argv[1]}):
        waits = await asyncio.gather(*(rate_limiter.take(checks) for _ in range(100)))
    admitted = sum(1 for wait in waits if wait == 0)
    print(json.dumps({"admitted": admitted, "fallbacks": rate_limiter.fallbacks}))

asyncio.run(main())
"""


def test_two_processes_on_one_redis_admit_the_global_burst_once(redis_url: str) -> None:
    key = f"test:{uuid.uuid4().hex}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PROCESS, redis_url, key], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    # 200 attempts between them; the site's burst is 40, whichever process asks.
    assert sum(output["admitted"] for output in outputs) == 40
    assert [output["fallbacks"] for output in outputs] == [0, 0]


def test_one_front_door_option_reads_as_the_merged_section_does() -> None:
    from realtime.conf import realtime_settings

    names = list(realtime_settings.front_door)
    with override_settings(REALTIME={"FRONT_DOOR": {"MAX_LOOP_LAG": 0.25}}):
        assert realtime_settings.front_door_option("MAX_LOOP_LAG") == 0.25
        assert {
            name: realtime_settings.front_door_option(name) for name in names
        } == realtime_settings.front_door
    with override_settings(REALTIME={}):
        assert {
            name: realtime_settings.front_door_option(name) for name in names
        } == realtime_settings.front_door
