"""Table tests for the pure rate limiters."""

from __future__ import annotations

import pytest

from realtime.core.rates import (
    FailureLimiter,
    Gcra,
    SettingLimiter,
    TokenBucket,
    gcra,
    parse_limit,
    parse_rate,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2000/s", (2000.0, 1.0)),
        ("30/m", (30.0, 60.0)),
        (" 5 / minute ", (5.0, 60.0)),
        ("1/h", (1.0, 3600.0)),
        # The defaults and the forms the docs and tests use.
        ("100/m", (100.0, 60.0)),
        ("3/m", (3.0, 60.0)),
        ("20/s", (20.0, 1.0)),
        ("5/10s", (5.0, 10.0)),
        ("50/10s", (50.0, 10.0)),
        ("7200/h", (7200.0, 3600.0)),
        # Every unit spelling, a multiple on each unit, decimals anywhere.
        ("5/sec", (5.0, 1.0)),
        ("5/second", (5.0, 1.0)),
        ("5/min", (5.0, 60.0)),
        ("5/2m", (5.0, 120.0)),
        ("5/hour", (5.0, 3600.0)),
        ("5/2h", (5.0, 7200.0)),
        ("0.5/s", (0.5, 1.0)),
        ("2.5/10s", (2.5, 10.0)),
        ("1/1.5m", (1.0, 90.0)),
        (" 5 / 10 s ", (5.0, 10.0)),
    ],
)
def test_rates_parse(text, expected) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "5",
        "5/d",
        "x/s",
        "-1/s",
        "5/s/s",
        # No unit, an unknown or capitalised one, days.
        "5/10",
        "5/ms",
        "5/S",
        "5/day",
        "9/d",
        # Nothing per something, something per nothing.
        "0/s",
        "0.0/m",
        "5/0s",
        # Numbers only as digits with an optional fraction.
        ".5/s",
        "1e3/s",
        "5/-1s",
        "fast",
    ],
)
def test_bad_rates_are_refused(text) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


@pytest.mark.parametrize(
    ("text", "per_second", "whole"),
    [
        ("2000/s", 2000.0, (2000, 1)),
        ("100/m", 100 / 60, (100, 60)),
        ("5/10s", 0.5, (5, 10)),
        ("0.5/s", 0.5, (1, 2)),
        ("2.5/m", 2.5 / 60, (5, 120)),
        ("0.1/s", 0.1, (1, 10)),
        ("1/1.5s", 1 / 1.5, (2, 3)),
    ],
)
def test_a_rate_reads_per_second_and_as_whole_events_per_whole_seconds(text, per_second, whole) -> None:
    rate = parse_rate(text)
    assert rate.per_second == pytest.approx(per_second)
    assert rate.whole() == whole


def test_a_bucket_allows_a_burst_then_the_rate() -> None:
    bucket = TokenBucket.from_rate("3/s")
    assert [bucket.allow(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.retry_after() == pytest.approx(1 / 3)
    assert bucket.allow(0.2) is False
    assert bucket.allow(0.34) is True
    assert [bucket.allow(10.0) for _ in range(4)] == [True, True, True, False]


def test_failures_block_a_key_for_the_rest_of_its_window_only() -> None:
    limiter = FailureLimiter.from_rate("3/m")
    for second in range(3):
        assert not limiter.blocked("1.2.3.4", second)
        limiter.failed("1.2.3.4", second)
    assert limiter.blocked("1.2.3.4", 10)
    assert not limiter.blocked("5.6.7.8", 10)
    assert not limiter.blocked("1.2.3.4", 61)


def test_memory_stays_bounded_under_a_spray_of_addresses() -> None:
    limiter = FailureLimiter(limit=5, period=60, max_keys=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", float(i))
    assert len(limiter._windows) <= 100


def test_a_setting_limiter_follows_its_setting_and_starts_afresh_when_cleared() -> None:
    setting: list[str | None] = ["2/m"]
    limiter = SettingLimiter(lambda: setting[0], TokenBucket.from_rate)
    bucket = limiter.current()
    assert bucket == TokenBucket(2.0, 60.0)
    assert [bucket.allow(0.0) for _ in range(3)] == [True, True, False]
    # The same setting: the same, spent bucket.
    assert limiter.current() is bucket
    # Another rate: a new bucket with a full allowance.
    setting[0] = "3/m"
    assert limiter.current() == TokenBucket(3.0, 60.0)
    # Off.
    setting[0] = None
    assert limiter.current() is None
    # Cleared: the same rate starts full again.
    setting[0] = "3/m"
    spent = limiter.current()
    assert [spent.allow(0.0) for _ in range(4)] == [True, True, True, False]
    limiter.clear()
    assert limiter.current() == TokenBucket(3.0, 60.0)


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [
        ("2000/s", (2000.0, 1.0), 2000.0),
        ("2000/s burst 400", (2000.0, 1.0), 400.0),
        ("5/10s burst 1", (5.0, 10.0), 1.0),
        ("0.5/s", (0.5, 1.0), 1.0),  # a burst is at least one event
        (" 25/s  burst  25 ", (25.0, 1.0), 25.0),
    ],
)
def test_a_limit_is_a_rate_and_a_burst(text, rate, burst) -> None:
    limit = parse_limit(text)
    assert (limit.rate, limit.burst) == (rate, burst)


@pytest.mark.parametrize(
    "text", ["2000/s burst", "2000/s burst 0", "2000/s burst 1.5", "burst 5", "5/s bursts 5"]
)
def test_bad_limits_are_refused(text) -> None:
    with pytest.raises(ValueError):
        parse_limit(text)


@pytest.mark.parametrize(
    ("limit", "arrivals", "expected"),
    [
        # 10/s burst 3: three at once, then one every 100 ms.
        ("10/s burst 3", [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.1]),
        ("10/s burst 3", [0.0, 0.0, 0.0, 0.1, 0.1], [0.0, 0.0, 0.0, 0.0, 0.1]),
        # A refused event does not count: the wait stays what it was.
        ("1/s burst 1", [0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 0.0]),
        # No window boundary: 2 per second is 2 per any second, not 4 around a boundary.
        ("2/s burst 2", [0.9, 0.9, 1.0, 1.0, 1.9], [0.0, 0.0, 0.4, 0.4, 0.0]),
        # Idle time refills the burst, never beyond it.
        ("10/s burst 2", [0.0, 0.0, 5.0, 5.0, 5.0], [0.0, 0.0, 0.0, 0.0, 0.1]),
    ],
)
def test_gcra_allows_the_burst_then_the_rate_and_says_how_long_to_wait(limit, arrivals, expected) -> None:
    store = Gcra()
    waits = [store.take([("k", parse_limit(limit))], now) for now in arrivals]
    assert waits == pytest.approx(expected)


def test_gcra_counts_an_event_against_every_key_or_none() -> None:
    store = Gcra()
    client, site = parse_limit("1/s burst 1"), parse_limit("100/s burst 2")
    assert store.take([("client:a", client), ("site", site)], 0.0) == 0.0
    # a is over its own limit: refused, and the site's budget is not spent on it.
    assert store.take([("client:a", client), ("site", site)], 0.0) == pytest.approx(1.0)
    assert store.take([("client:b", client), ("site", site)], 0.0) == 0.0
    assert store.take([("client:c", client), ("site", site)], 0.0) == pytest.approx(0.01)


def test_gcra_memory_is_bounded_under_a_spray_of_keys() -> None:
    store = Gcra(max_keys=100)
    limit = parse_limit("1/s burst 1")
    for n in range(1000):
        assert store.take([(f"k{n}", limit)], n * 0.001) == 0.0
    assert len(store._tats) <= 100


def test_gcra_math_is_the_same_as_a_bucket_of_the_burst_refilled_at_the_rate() -> None:
    tat, wait = gcra(None, 10.0, parse_limit("4/s burst 2"))
    assert (tat, wait) == (10.25, 0.0)
    tat, wait = gcra(tat, 10.0, parse_limit("4/s burst 2"))
    assert (tat, wait) == (10.5, 0.0)
    assert gcra(tat, 10.0, parse_limit("4/s burst 2")) == (10.75, pytest.approx(0.25))


def test_gcra_counts_a_cost_of_several_events_and_never_allows_more_than_the_burst() -> None:
    store = Gcra()
    limit = [("ns", parse_limit("10/s burst 5"))]
    assert store.take(limit, 0.0, cost=3) == 0.0
    assert store.take(limit, 0.0, cost=3) == pytest.approx(0.1)
    assert store.take(limit, 0.0, cost=2) == 0.0
    assert store.take(limit, 100.0, cost=6) == pytest.approx(0.1)  # more than the burst, ever


def test_gcra_allows_the_first_event_of_a_burst_of_one_whatever_the_clock_reads() -> None:
    # (now + 3600) - now - 3600 is above 0 for about one clock reading in six.
    limit = parse_limit("1/h")
    nows = [12345.678 + n * 0.0137 for n in range(2000)]
    assert [now for now in nows if gcra(None, now, limit)[1] > 0] == []
    assert all(gcra(now + limit.interval, now, limit)[1] > 0 for now in nows)
