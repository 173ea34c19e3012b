"""The arithmetic of leased allowances (realtime.core.allowance): pure, table-driven."""

from __future__ import annotations

import pytest

from realtime.core.allowance import LEASE_TTL, Allowance, Lease, gcra_lease, lease_size
from realtime.core.rates import gcra, parse_limit

TEN_THOUSAND = parse_limit("10000/s")  # interval 0.1 ms, burst 10,000 (1 s of tolerance)
TEN = parse_limit("10/s burst 10")  # interval 0.1 s


@pytest.mark.parametrize(
    ("text", "seconds", "size"),
    [
        ("10000/s", 0.05, 500),  # the default: 1/20 s of the rate
        ("10000/s burst 2000", 0.05, 100),  # no more than the same fraction of the burst
        ("600000/m", 0.05, 500),  # the same rate per minute
        ("10000/s", 0.0, 0),  # leasing off
        ("100/s", 0.05, 0),  # a slice of 5: not leased, counted exactly
        ("200/s", 0.05, 10),  # the smallest slice leased
        ("4/m burst 4", 1.0, 0),
    ],
)
def test_a_slice_is_a_fraction_of_a_second_of_the_rate_and_of_the_burst(text, seconds, size) -> None:
    assert lease_size(parse_limit(text), seconds) == size


@pytest.mark.parametrize(
    ("tat", "now", "limit", "want", "need", "giveback", "expected"),
    [
        # A key never seen: the whole slice, the arrival time moved by its events.
        (None, 100.0, TEN_THOUSAND, 500, 1, 0, Lease(100.05, 500, 0.0)),
        # An arrival time in the past is now.
        (50.0, 100.0, TEN, 3, 3, 0, Lease(100.3, 3, 0.0)),
        # Less room than wanted: what there is, when at least what is needed.
        (100.8, 100.0, TEN, 5, 1, 0, Lease(101.0, 2, 0.0)),
        # Less room than needed: nothing counted, the wait for what is needed.
        (100.8, 100.0, TEN, 5, 3, 0, Lease(100.8, 0, pytest.approx(0.1))),
        # No room at all, even for a background lease that needs 1.
        (101.0, 100.0, TEN, 5, 1, 0, Lease(101.0, 0, pytest.approx(0.1))),
        # Unspent events given back make room again.
        (101.0, 100.0, TEN, 5, 1, 4, Lease(101.0, 4, 0.0)),
        # Given back beyond a full bucket: full, no fuller.
        (100.2, 100.0, TEN, 20, 1, 9, Lease(101.0, 10, 0.0)),
        # Given back and still refused: the give-back is kept.
        (101.5, 100.0, TEN, 5, 5, 2, Lease(101.3, 0, pytest.approx(0.8))),
        # More than the burst is never granted.
        (None, 100.0, TEN, 11, 11, 0, Lease(100.0, 0, pytest.approx(0.1))),
    ],
)
def test_a_lease_grants_what_the_gcra_allows(tat, now, limit, want, need, giveback, expected) -> None:
    lease = gcra_lease(tat, now, limit, want, need, giveback)
    assert (pytest.approx(lease.tat), lease.granted, lease.wait) == expected


@pytest.mark.parametrize("start", [None, 99.0, 100.4, 100.95])
def test_a_lease_of_k_events_is_k_single_decisions_in_a_row(start) -> None:
    lease = gcra_lease(start, 100.0, TEN, 10, 1)
    tat, singles = start, 0
    for _ in range(10):
        new_tat, wait = gcra(tat, 100.0, TEN)
        if wait:
            break
        tat, singles = new_tat, singles + 1
    assert lease.granted == singles
    assert lease.tat == pytest.approx(tat if singles else max(start or 100.0, 100.0))


def test_an_allowance_spends_what_it_holds_and_asks_for_more_at_half_a_slice() -> None:
    allowance = Allowance()
    assert not allowance.spend(1, 10.0)
    assert allowance.low(500)
    allowance.add(500, 10.0)
    assert (allowance.spend(240, 10.1), allowance.low(500)) == (True, False)
    assert (allowance.spend(20, 10.2), allowance.low(500)) == (True, True)  # 240 left
    assert not allowance.spend(241, 10.3)  # all or nothing
    assert (allowance.events, allowance.giveback()) == (240, 0)


def test_an_allowance_past_its_lease_is_not_spent_but_given_back_once() -> None:
    allowance = Allowance()
    allowance.add(500, 10.0)
    assert allowance.spend(100, 10.0 + LEASE_TTL - 0.01)
    assert not allowance.spend(1, 10.0 + LEASE_TTL)
    assert (allowance.events, allowance.giveback(), allowance.giveback()) == (0, 400, 0)
    allowance.add(30, 20.0)  # a fresh lease runs from its own time
    assert allowance.spend(30, 20.0 + LEASE_TTL - 0.01)
