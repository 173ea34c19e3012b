"""Table tests for the pure rate limiters."""

from __future__ import annotations

import pytest

from realtime.core.rates import FailureLimiter, SettingLimiter, TokenBucket, parse_rate


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
