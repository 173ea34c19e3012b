"""Who a request comes from, when the process counts as behind, and rates shared through Redis."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import redis
from django.test import override_settings

from realtime.auth.limits import RateLimiter, rate_limiter
from realtime.core.rates import parse_limit
from realtime.transport.clients import client_address, client_ip
from realtime.transport.overload import Overload

from .conftest import CONNECTION_ACK, assert_sent, connection_init, publish

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


LEASING = """
import asyncio, json, sys, django
django.setup()
from django.test import override_settings
from realtime.auth.limits import rate_limiter
from realtime.core.rates import parse_limit

async def main():
    url, key, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
    limit = parse_limit("1/h burst 200")  # no refill to speak of while the test runs
    with override_settings(REALTIME={"LIMITS_REDIS_URL": url}):
        waits = [await rate_limiter.take_leased(key, limit, 1, size) for _ in range(300)]
        await rate_limiter.aclose()
    admitted = sum(1 for wait in waits if wait == 0)
    counts = {"leases": rate_limiter.leases, "fallbacks": rate_limiter.fallbacks}
    print(json.dumps({"admitted": admitted, **counts}))

asyncio.run(main())
"""


def test_two_processes_leasing_one_budget_admit_its_burst_once_within_two_slices(redis_url: str) -> None:
    key, size = f"test:{uuid.uuid4().hex}", 20
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings.test"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", LEASING, redis_url, key, str(size)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    # 600 attempts between them on a burst of 200: each event admitted was counted in
    # Redis first, and what a process leased and left unspent is at most one slice.
    admitted = sum(output["admitted"] for output in outputs)
    assert 200 - 2 * size <= admitted <= 200
    assert [output["fallbacks"] for output in outputs] == [0, 0]
    # A round trip per slice, not per decision (and one per refusal once the budget is spent).
    assert all(
        output["leases"] < output["admitted"] / 5 + (300 - output["admitted"]) + 2 for output in outputs
    )


async def test_a_leased_allowance_is_spent_without_a_round_trip_and_refilled_ahead(redis_url: str) -> None:
    key, limit = f"test:{uuid.uuid4().hex}", parse_limit("1/h burst 1000")
    limiter = RateLimiter()
    with override_settings(REALTIME={"LIMITS_REDIS_URL": redis_url}):
        first = await limiter.take_leased(key, limit, 1, 100)  # waits for the first lease: 101 events
        spent = [await limiter.take_leased(key, limit, 5, 100) for _ in range(11)]  # 56 spent, 45 left
        leases_while_spending = limiter.leases
        await limiter.aclose()  # lets the background lease of the next slice finish
    assert (first, spent, leases_while_spending, limiter.leases) == (0.0, [0.0] * 11, 1, 2)
    with redis.Redis.from_url(redis_url) as client:
        remaining = 1000 - round(
            (float(client.get("rt:rate:" + key)) - client.time()[0]) * limit.rate.per_second
        )
    # Counted in Redis: the first lease (101) and the refill up to one slice (55 more).
    assert remaining in range(1000 - 156 - 1, 1000 - 156 + 2)


async def test_a_crowd_of_decisions_waits_for_one_lease_and_none_is_refused_while_the_budget_lasts(
    redis_url: str,
) -> None:
    key, limit = f"test:{uuid.uuid4().hex}", parse_limit("1/h burst 1000")
    limiter = RateLimiter()
    with override_settings(REALTIME={"LIMITS_REDIS_URL": redis_url}):
        # 100 clients' 5 pipelined publishes each, all at once: far more than one slice of 20.
        crowd = await asyncio.gather(*(limiter.take_leased(key, limit, 1, 20) for _ in range(500)))
        over = await asyncio.gather(*(limiter.take_leased(key, limit, 1, 20) for _ in range(600)))
        await limiter.aclose()
    assert crowd == [0.0] * 500
    # Refused by Redis alone, once the budget is spent: within a slice of the burst.
    assert 1000 - 20 <= 500 + sum(1 for wait in over if wait == 0) <= 1000
    assert limiter.fallbacks == 0


async def test_an_allowance_past_its_lease_goes_back_with_the_next_lease(redis_url: str, monkeypatch) -> None:
    key, limit = f"test:{uuid.uuid4().hex}", parse_limit("1/h burst 100")
    limiter, clock = RateLimiter(), [1000.0]
    monkeypatch.setattr("realtime.auth.limits.time.monotonic", lambda: clock[0])
    with override_settings(REALTIME={"LIMITS_REDIS_URL": redis_url}):
        assert await limiter.take_leased(key, limit, 1, 50) == 0  # 51 counted, 50 held
        clock[0] += 60  # the lease has run out: its 50 wait to be given back
        waits = [await limiter.take_leased(key, limit, 10, 50) for _ in range(10)]
        await limiter.aclose()
    # 1 + 10 × 10 would be 101 of 100 without the 50 given back; with them, all 100 fit.
    assert waits[:9] == [0.0] * 9 and waits[9] > 0


async def test_leases_fall_back_to_this_process_when_redis_does_not_answer() -> None:
    limiter = RateLimiter()
    with override_settings(REALTIME={"LIMITS_REDIS_URL": "redis://127.0.0.1:1/0"}):
        waits = [await limiter.take_leased("k", parse_limit("1/m burst 2"), 1, 20) for _ in range(3)]
    await limiter.aclose()
    assert (waits[:2], waits[2] > 0, limiter.fallbacks, limiter.leases) == ([0.0, 0.0], True, 3, 0)


@pytest.mark.django_db(transaction=True)
async def test_a_publish_beyond_a_shared_budget_another_process_spent_gets_publish_error(
    redis_url: str, connect
) -> None:
    rate = f"{1000 + uuid.uuid4().int % 1000}/s"  # a key of this test's own
    with redis.Redis.from_url(redis_url) as client:
        now = client.time()
        # Every process's budget spent for a minute to come.
        client.set(f"rt:rate:inbound:default:{rate}", str(now[0] + now[1] / 1e6 + 61), px=70_000)
    with override_settings(REALTIME={"LIMITS_REDIS_URL": redis_url, "INBOUND_EVENT_RATE": rate}):
        comm = await connect()
        await connection_init(comm)
        await assert_sent(comm, CONNECTION_ACK)
        await assert_sent(comm, {"type": "ka"})
        await publish(comm, "p", "/default/room", ['"x"'])
        await assert_sent(
            comm,
            {
                "type": "publish_error",
                "id": "p",
                "errors": [
                    {
                        "errorType": "LimitExceededException",
                        "message": "Too many events published to 'default' right now; retry after a delay.",
                    }
                ],
            },
        )
        await comm.disconnect()
        await rate_limiter.aclose()  # the process's limiter: its connections belong to this test's loop
