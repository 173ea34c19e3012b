"""Per-connection subscription state (realtime/core/session.py, PROTOCOL §3.4, §3.7, §11)."""

from __future__ import annotations

import pytest

from realtime.core.paths import ChannelPath, parse_channel
from realtime.core.session import Session, SubscribeDecision
from realtime.exceptions import DuplicateOperation, MaxSubscriptionsReached, UnknownOperation

NEW = SubscribeDecision.NEW
REPEAT = SubscribeDecision.REPEAT


def channel(raw: str) -> ChannelPath:
    return parse_channel(raw, allow_wildcard=True)


def session_with(*subscriptions: tuple[str, str], max_subscriptions: int = 200) -> Session:
    session = Session(max_subscriptions=max_subscriptions)
    for op_id, raw in subscriptions:
        session.add(op_id, channel(raw))
    return session


def test_a_new_session_is_empty_and_not_initialized():
    session = Session(max_subscriptions=200)
    assert (session.subscriptions, session.initialized, session.max_subscriptions) == ({}, False, 200)


@pytest.mark.parametrize(
    ("held", "op_id", "raw", "decision"),
    [
        pytest.param([], "s1", "/default/a", NEW, id="first-subscription"),
        pytest.param([("s1", "/default/a")], "s2", "/default/b", NEW, id="another-id-another-channel"),
        pytest.param([("s1", "/default/a")], "s2", "/default/a", NEW, id="another-id-same-channel"),
        pytest.param([("s1", "/default/a")], "s1", "/default/a", REPEAT, id="same-id-same-channel"),
        pytest.param(
            [("s1", "/default/a")], "s1", "default/a/", REPEAT, id="same-id-same-channel-other-spelling"
        ),
        pytest.param([("s1", "/default/*")], "s1", "/default/*", REPEAT, id="same-id-same-wildcard"),
        pytest.param([("s1", "/default/a")], "S1", "/default/b", NEW, id="ids-are-case-sensitive"),
    ],
)
def test_check_subscribe_decides_new_or_repeat(held, op_id, raw, decision):
    assert session_with(*held).check_subscribe(op_id, channel(raw)) is decision


@pytest.mark.parametrize(
    ("held", "op_id", "raw"),
    [
        pytest.param([("s1", "/default/a")], "s1", "/default/b", id="other-channel"),
        pytest.param([("s1", "/default/a")], "s1", "/default/*", id="wildcard-over-concrete"),
        pytest.param([("s1", "/default/*")], "s1", "/default/a", id="concrete-over-wildcard"),
        pytest.param([("s1", "/default/a")], "s1", "/default/A", id="channel-case-differs"),
    ],
)
def test_reusing_a_live_id_for_another_channel_is_a_duplicate_operation(held, op_id, raw):
    session = session_with(*held)
    with pytest.raises(DuplicateOperation, match="^Another operation with this id is already in progress$"):
        session.check_subscribe(op_id, channel(raw))
    assert session.subscriptions == {op_id: channel(held[0][1])}


@pytest.mark.parametrize("max_subscriptions", [1, 2, 200])
def test_a_subscription_beyond_the_maximum_is_refused(max_subscriptions):
    session = session_with(
        *[(f"s{i}", f"/ns/c{i}") for i in range(max_subscriptions)], max_subscriptions=max_subscriptions
    )
    with pytest.raises(MaxSubscriptionsReached, match="^Max number of subscriptions reached$"):
        session.check_subscribe("one-more", channel("/ns/extra"))
    assert len(session.subscriptions) == max_subscriptions


def test_the_last_subscription_below_the_maximum_is_accepted():
    session = session_with(("s0", "/ns/a"), max_subscriptions=2)
    assert session.check_subscribe("s1", channel("/ns/b")) is NEW


def test_a_repeated_subscribe_at_the_maximum_is_still_a_repeat():
    session = session_with(("s0", "/ns/a"), ("s1", "/ns/b"), max_subscriptions=2)
    assert session.check_subscribe("s1", channel("/ns/b")) is REPEAT


def test_a_duplicate_id_at_the_maximum_is_reported_as_a_duplicate():
    session = session_with(("s0", "/ns/a"), ("s1", "/ns/b"), max_subscriptions=2)
    with pytest.raises(DuplicateOperation):
        session.check_subscribe("s1", channel("/ns/c"))


def test_check_subscribe_does_not_record_the_subscription():
    session = Session(max_subscriptions=200)
    session.check_subscribe("s1", channel("/ns/a"))
    assert session.subscriptions == {}


def test_add_then_remove_returns_the_channel_and_frees_the_id():
    session = session_with(("s1", "/ns/a"), ("s2", "/ns/b"))
    assert session.remove("s1") == channel("/ns/a")
    assert session.subscriptions == {"s2": channel("/ns/b")}
    assert session.check_subscribe("s1", channel("/ns/other")) is NEW


def test_removing_frees_a_slot_under_the_maximum():
    session = session_with(("s1", "/ns/a"), max_subscriptions=1)
    session.remove("s1")
    assert session.check_subscribe("s2", channel("/ns/b")) is NEW


@pytest.mark.parametrize(
    ("held", "op_id"),
    [
        pytest.param([], "s1", id="empty-session"),
        pytest.param([("s1", "/ns/a")], "s2", id="other-id"),
        pytest.param([("s1", "/ns/a")], "S1", id="case-differs"),
    ],
)
def test_removing_an_unknown_id_is_an_unknown_operation(held, op_id):
    session = session_with(*held)
    with pytest.raises(UnknownOperation, match=f"^Unknown operation id {op_id}$"):
        session.remove(op_id)
    assert len(session.subscriptions) == len(held)


def test_removing_twice_is_an_unknown_operation_the_second_time():
    session = session_with(("s1", "/ns/a"))
    session.remove("s1")
    with pytest.raises(UnknownOperation, match="^Unknown operation id s1$"):
        session.remove("s1")
