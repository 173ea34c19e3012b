"""Table tests for the pure rate limiters."""

from __future__ import annotations

import pytest

from realtime.ratelimit import FailureLimiter, TokenBucket, parse_rate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2000/s", (2000.0, 1.0)),
        ("30/m", (30.0, 60.0)),
        (" 5 / minute ", (5.0, 60.0)),
        ("1/h", (1.0, 3600.0)),
    ],
)
def test_rates_parse(text, expected) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "5", "5/d", "x/s", "-1/s", "5/s/s"])
def test_bad_rates_are_refused(text) -> None:
    with pytest.raises(ValueError):
        parse_rate(text)


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
