"""The live dashboard (``realtime.ops.dashboard``): a staff page, a staff-only channel, a sampler."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client, override_settings
from prometheus_client import CollectorRegistry

from realtime.exceptions import ServiceUnavailable
from realtime.models import Namespace
from realtime.ops import dashboard
from realtime.ops.dashboard import DASHBOARD_CHANNEL, OPS_NAMESPACE
from realtime.ops.metrics import metrics

from .conftest import (
    SUBPROTOCOL,
    UNAUTHORIZED,
    assert_sent,
    assert_silent,
    publish,
    subscribe,
    subscribed,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _no_sampler() -> Iterator[None]:
    """Snapshots only when a test asks (sample_once) or speeds the sampler up itself."""
    with override_settings(REALTIME={**settings.REALTIME, "DASHBOARD_INTERVAL": 0}):
        yield


@pytest.fixture
def ops_namespace(default_namespace: Namespace) -> Namespace:
    # The data migration creates it; transactional tests flush it away.
    namespace, _ = Namespace.objects.update_or_create(
        name=OPS_NAMESPACE, defaults={"publish_auth_modes": ["USER"], "subscribe_auth_modes": ["USER"]}
    )
    return namespace


def _cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


@pytest.fixture
def staff() -> User:
    return User.objects.create_user("ops", password="pw-ops-123", is_staff=True)


@pytest.fixture
def member() -> User:
    return User.objects.create_user("member", password="pw-member-123")


@pytest.fixture
def staff_cookie(staff: User) -> str:
    return _cookie(staff)


@pytest.fixture
def member_cookie(member: User) -> str:
    return _cookie(member)


@pytest.fixture
def open_as(open_socket: Any, ops_namespace: Namespace) -> Any:
    """Open a socket the way the page does: the session cookie, same origin, no key."""

    async def open_(cookie: str) -> Any:
        headers = [(b"host", b"testserver"), (b"origin", b"http://testserver")]
        headers.append((b"cookie", f"sessionid={cookie}".encode()))
        comm, _ = await open_socket(subprotocols=[SUBPROTOCOL], headers=headers)
        return comm

    return open_


# -- the page ------------------------------------------------------------------------


def test_the_page_is_for_staff_only(staff, member):
    assert Client().get("/realtime/dashboard/").status_code == 302
    client = Client()
    client.force_login(member)
    response = client.get("/realtime/dashboard/")
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")

    client.force_login(staff)
    response = client.get("/realtime/dashboard/")

    assert response.status_code == 200
    html = response.content.decode()
    assert '<script src="/static/realtime/realtime.js"></script>' in html
    assert f'<script id="dashboard-channel" type="application/json">"{DASHBOARD_CHANNEL}"</script>' in html
    assert '"http://testserver/event"' in html
    # Hand-drawn charts, nothing loaded from elsewhere.
    assert "https://" not in html and "http://cdn" not in html


# -- the channel ---------------------------------------------------------------------


async def test_a_staff_session_watches_the_channel_and_gets_snapshots(open_as, staff_cookie):
    comm = await open_as(staff_cookie)
    await subscribed(comm, "d", DASHBOARD_CHANNEL)

    await dashboard.sample_once()

    frame = await comm.receive_json_from()
    assert frame["type"] == "data" and frame["id"] == "d"
    snapshot = json.loads(frame["event"])
    assert set(snapshot) == {
        "v",
        "process",
        "t",
        "interval",
        "connections",
        "totals",
        "namespaces",
        "occupancy",
        "refusals",
    }
    assert snapshot["v"] == 1 and snapshot["connections"] == 1 and snapshot["interval"] == 0
    assert snapshot["process"] == dashboard.process_id()
    assert snapshot["totals"]["connects"] >= 1
    assert snapshot["namespaces"][OPS_NAMESPACE]["subscriptions"] >= 1
    await assert_silent(comm)


async def test_the_channel_refuses_a_signed_in_user_who_is_not_staff(open_as, member_cookie):
    comm = await open_as(member_cookie)
    await subscribe(comm, "d", DASHBOARD_CHANNEL)
    await assert_sent(comm, {"type": "subscribe_error", "id": "d", "errors": [UNAUTHORIZED]})

    await dashboard.sample_once()
    await assert_silent(comm)


async def test_the_channel_refuses_api_keys_even_with_a_staff_session_absent(connect, ops_namespace):
    comm = await connect()
    await subscribe(comm, "d", DASHBOARD_CHANNEL)
    await assert_sent(comm, {"type": "subscribe_error", "id": "d", "errors": [UNAUTHORIZED]})


async def test_a_staff_user_whose_staff_flag_was_removed_is_refused(open_as, staff, staff_cookie):
    comm = await open_as(staff_cookie)
    staff.is_staff = False
    await staff.asave()

    await subscribe(comm, "d", f"/{OPS_NAMESPACE}/*")
    await assert_sent(comm, {"type": "subscribe_error", "id": "d", "errors": [UNAUTHORIZED]})


async def test_nobody_publishes_snapshots_but_the_server(open_as, staff_cookie):
    comm = await open_as(staff_cookie)
    await publish(comm, "p", DASHBOARD_CHANNEL, ['{"v":1}'])
    await assert_sent(comm, {"type": "publish_error", "id": "p", "errors": [UNAUTHORIZED]})


@pytest.mark.parametrize(
    "identity",
    [
        None,
        {},
        {"sub": "1"},
        {"sub": "not-a-number", "username": "ops"},
        {"sub": "1", "username": "ops", "handlerContext": {}},
    ],
)
def test_only_a_user_identity_of_a_staff_member_passes(identity, staff):
    assert not dashboard._is_staff(identity)


def test_a_user_identity_must_match_both_id_and_username(staff):
    assert dashboard._is_staff({"sub": str(staff.pk), "username": "ops"})
    assert not dashboard._is_staff({"sub": str(staff.pk), "username": "someone-else"})


# -- the sampler ---------------------------------------------------------------------


@pytest.fixture
def fast_sampler() -> Iterator[None]:
    with override_settings(REALTIME={**settings.REALTIME, "DASHBOARD_INTERVAL": 0.05}):
        yield


async def test_the_hub_starts_a_sampler_that_publishes_by_itself(fast_sampler, open_as, staff_cookie):
    comm = await open_as(staff_cookie)
    await subscribed(comm, "d", DASHBOARD_CHANNEL)

    first = json.loads((await comm.receive_json_from(timeout=2))["event"])
    second = json.loads((await comm.receive_json_from(timeout=2))["event"])

    assert second["t"] > first["t"] and second["process"] == first["process"]
    assert second["interval"] == 0.05


@pytest.fixture
def fresh_metrics() -> Iterator[None]:
    """Counters from zero: a registry (and dashboard totals) of this test's own."""
    metrics.bind(CollectorRegistry())
    yield
    metrics.bind()


async def test_a_publish_shows_in_the_next_snapshot(
    fresh_metrics, fast_sampler, open_as, staff_cookie, connect
):
    watcher = await open_as(staff_cookie)
    await subscribed(watcher, "d", DASHBOARD_CHANNEL)
    client = await connect()
    await subscribed(client, "s", "/default/room")
    await publish(client, "p", "/default/room", ['"a"', '"b"'])

    for _ in range(10):
        snapshot = json.loads((await watcher.receive_json_from(timeout=2))["event"])
        default = snapshot["namespaces"].get("default", {})
        if default.get("publishes"):
            break
    assert default["publishes"] == 1 and default["events"] == 2 and default["deliveries"] == 2
    assert default["subscriptions"] == 1
    assert snapshot["connections"] == 2


async def test_the_sampler_backs_off_while_the_channel_layer_refuses_snapshots(monkeypatch):
    calls: list[float] = []

    async def refuse(*args: Any) -> None:
        calls.append(asyncio.get_running_loop().time())
        raise ServiceUnavailable()

    monkeypatch.setattr(dashboard.bridge, "fan_out", refuse)
    with override_settings(REALTIME={**settings.REALTIME, "DASHBOARD_INTERVAL": 0.01}):
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(dashboard.sampler_run(), 0.3)

    # 0.01, 0.02, 0.04, 0.08, 0.16 s apart: five tries in 0.3 s instead of thirty.
    assert 3 <= len(calls) <= 6
    gaps = [later - earlier for earlier, later in zip(calls, calls[1:], strict=False)]
    assert gaps == sorted(gaps)


async def test_snapshots_carry_the_busiest_channels_and_presence_watchers_bounded(
    open_as, staff_cookie, connect, monkeypatch
):
    from realtime.presence import service

    monkeypatch.setattr(service, "DASHBOARD_CHANNELS", 3)
    run = uuid.uuid4().hex[:8]  # channels of this test only (Redis may hold others' counts)
    watcher = await open_as(staff_cookie)
    await subscribed(watcher, "d", DASHBOARD_CHANNEL)
    first, second = await connect(), await connect()
    # busy: 2 connections; wild: 2 subscriptions of 1 connection; then 3 channels of 1 each.
    await subscribed(first, "a", f"/default/busy-{run}")
    await subscribed(second, "a", f"/default/busy-{run}")
    await subscribed(first, "w1", f"/default/wild-{run}/*")
    await subscribed(second, "w1", f"/default/wild-{run}/*")
    await subscribed(second, "w2", f"/default/wild-{run}/*")
    for index in range(3):
        await subscribed(first, f"q{index}", f"/default/quiet{index}-{run}")
    await subscribed(second, "p", f"/$presence/default/busy-{run}")
    await second.receive_json_from()  # the watcher's first occupancy event

    await dashboard.sample_once()

    snapshot = json.loads((await watcher.receive_json_from())["event"])
    assert snapshot["occupancy"] == {
        "channels": [
            {"channel": f"/default/wild-{run}/*", "subscriptions": 3, "connections": 2},
            {"channel": f"/default/busy-{run}", "subscriptions": 2, "connections": 2},
            # Of the channels of one subscription (the three quiet ones, the dashboard's own), the
            # limit keeps the first by name.
            {"channel": f"/default/quiet0-{run}", "subscriptions": 1, "connections": 1},
        ],
        "watchers": {"default": 1},
    }
    await assert_silent(watcher)


async def test_a_snapshot_leaves_out_a_part_that_fails(open_as, staff_cookie, monkeypatch):
    async def failing() -> dict[str, Any]:
        raise ServiceUnavailable()

    monkeypatch.setitem(dashboard._parts, "occupancy", failing)
    watcher = await open_as(staff_cookie)
    await subscribed(watcher, "d", DASHBOARD_CHANNEL)

    await dashboard.sample_once()

    snapshot = json.loads((await watcher.receive_json_from())["event"])
    assert "occupancy" not in snapshot and snapshot["connections"] == 1


def test_a_snapshot_counts_refusals_by_operation_and_reason_apart_from_namespaces(monkeypatch):
    monkeypatch.setattr(metrics, "totals", type(metrics.totals)())
    metrics.refused("quiz.join", "overload")
    metrics.refused("quiz.join", "overload")
    metrics.refused("quiz.join", "rate")
    metrics.refused("publish", "rate")

    snapshot = dashboard.snapshot()

    assert snapshot["refusals"] == {"quiz.join": {"overload": 2, "rate": 1}, "publish": {"rate": 1}}
    assert snapshot["namespaces"] == {}
    assert "refused" not in snapshot["totals"]
