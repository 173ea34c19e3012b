"""Per-process state: everything registered is reset by one call, and by a change of ``REALTIME``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from django.test import override_settings

from quiz import auth as quiz_auth
from realtime import auth, state
from realtime.auth.limits import auth_failure_limiter, rate_limiter
from realtime.core.history import Position
from realtime.core.rates import parse_limit
from realtime.delivery import history
from realtime.state import Resettable, register, registered, reset_all
from realtime.store import selectors
from realtime.transport.overload import overload

# Rates low enough to spend in a test; both overrides use the same ones, so a
# limiter that is fresh under the second was reset, not rebuilt for a new rate.
RATES = {"CONNECT_RATE": "3/m", "AUTH_FAILURE_RATE": "3/m"}
CLIENT = "192.0.2.1"


ONE_A_MINUTE = [("key", parse_limit("1/m"))]


def _spend_rate() -> None:
    rate_limiter.local.take(ONE_A_MINUTE, time.monotonic())


def _rate_unspent() -> bool:
    return rate_limiter.local.take(ONE_A_MINUTE, time.monotonic()) == 0


def _lag() -> None:
    overload.lag = overload.queue_delay = 5.0


def _fail_authorizations() -> None:
    limiter = auth_failure_limiter.current()
    assert limiter is not None
    for _ in range(3):
        limiter.failed(CLIENT, time.monotonic())
    assert limiter.blocked(CLIENT, time.monotonic())


def _not_blocked() -> bool:
    limiter = auth_failure_limiter.current()
    return limiter is not None and not limiter.blocked(CLIENT, time.monotonic())


@dataclass(frozen=True)
class Piece:
    """A registered object, how to fill it, and how to tell it is fresh."""

    state: Callable[[], Resettable]
    fill: Callable[[], object]
    fresh: Callable[[], bool]


PIECES = {
    "namespace_cache": Piece(
        lambda: selectors.namespace_cache,
        lambda: selectors.namespace_cache.set("ns", None, 60),
        lambda: len(selectors.namespace_cache) == 0,
    ),
    "api_key_cache": Piece(
        lambda: selectors.api_key_cache,
        lambda: selectors.api_key_cache.set("hash", None, 60),
        lambda: len(selectors.api_key_cache) == 0,
    ),
    "iam_credential_cache": Piece(
        lambda: selectors.iam_credential_cache,
        lambda: selectors.iam_credential_cache.set("AKID", None, 60),
        lambda: len(selectors.iam_credential_cache) == 0,
    ),
    "authorizer_cache": Piece(
        lambda: auth.authorizer_cache,
        lambda: auth.get_authorizer("API_KEY"),
        lambda: auth.authorizer_cache == {},
    ),
    "rate_limiter": Piece(lambda: rate_limiter, _spend_rate, _rate_unspent),
    "overload": Piece(lambda: overload, _lag, lambda: overload.lag == overload.queue_delay == 0),
    "auth_failure_limiter": Piece(lambda: auth_failure_limiter, _fail_authorizations, _not_blocked),
    "history_stores": Piece(
        lambda: history.stores,
        lambda: asyncio.run(history.stores.memory.remember("token", Position(1, "epoch"), 60)),
        lambda: asyncio.run(history.stores.memory.recall("token")) is None,
    ),
    "quiz_token_cache": Piece(
        lambda: quiz_auth.token_cache,
        lambda: quiz_auth.token_cache.set("token", None, 60),
        lambda: len(quiz_auth.token_cache) == 0,
    ),
}


def test_every_registered_piece_is_covered_here() -> None:
    assert sorted(map(id, registered())) == sorted(id(piece.state()) for piece in PIECES.values())


def _change_realtime() -> None:
    # Leaving one override and entering another are both changes of REALTIME.
    with override_settings(REALTIME={**RATES, "KEEPALIVE_INTERVAL": 30}):
        pass


@pytest.mark.parametrize("reset", [_change_realtime, reset_all], ids=["REALTIME changed", "reset_all"])
@pytest.mark.parametrize("name", PIECES)
def test_every_registered_piece_is_fresh_after_a_reset(name: str, reset: Callable[[], None]) -> None:
    piece = PIECES[name]
    with override_settings(REALTIME=RATES):
        piece.fill()
        assert not piece.fresh()
        reset()
        assert piece.fresh()


class Spy:
    def __init__(self) -> None:
        self.cleared = 0

    def clear(self) -> None:
        self.cleared += 1


def test_only_a_change_of_realtime_resets(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = Spy()
    monkeypatch.setattr(state, "_registered", [spy])
    with override_settings(QUIZ={"CACHE_TTL": 0}):
        assert spy.cleared == 0
    with override_settings(REALTIME=RATES):
        assert spy.cleared == 1
    assert spy.cleared == 2


def test_registering_returns_the_object_and_is_idempotent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state, "_registered", [])
    spy = Spy()
    assert register(spy) is spy
    assert register(spy) is spy
    assert registered() == (spy,)
    reset_all()
    assert spy.cleared == 1
