"""Metrics (``realtime.ops.metrics``): each one moves when its event happens, and ``/metrics``.

Every test binds the metrics to a fresh ``CollectorRegistry`` (the registry is
injectable), so values are exact, not deltas.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.checks import registry as check_registry
from django.test import AsyncClient, Client, override_settings
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import realtime
from realtime import handlers
from realtime.checks import check_metrics_token
from realtime.delivery.bridge import bridge
from realtime.handlers import HandlerKind
from realtime.models import ApiKey, Namespace
from realtime.ops import exposition
from realtime.ops.metrics import RealtimeMetrics, metrics

from .conftest import (
    CONNECTION_ACK,
    KA,
    SUBPROTOCOL,
    api_key_authorization,
    assert_closed,
    assert_published,
    assert_sent,
    connection_init,
    header_subprotocol,
    publish,
    receive_frames,
    subscribe,
    subscribed,
    unsubscribe,
)

pytestmark = pytest.mark.django_db(transaction=True)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    """The realtime metrics, bound to a registry of this test's own."""
    fresh = CollectorRegistry()
    metrics.bind(fresh)
    yield fresh
    metrics.bind()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def guarded(default_namespace: Namespace) -> Iterator[Namespace]:
    """A namespace whose handlers each test sets; unregistered afterwards."""
    namespace = Namespace.objects.create(name="guarded")
    yield namespace
    for kind in HandlerKind:
        handlers.unregister(kind, "guarded")


async def ready(comm: Any) -> None:
    """``connection_init`` answered: the connect handler has finished."""
    await connection_init(comm)
    assert await receive_frames(comm, 2) == [CONNECTION_ACK, KA]


# -- connections ---------------------------------------------------------------------


async def test_an_authorized_connection_moves_requests_success_active_and_then_disconnects(registry, connect):
    comm = await connect()
    await ready(comm)

    assert value(registry, "realtime_connection_requests_total") == 1
    assert value(registry, "realtime_connection_success_total") == 1
    assert value(registry, "realtime_connection_active") == 1
    assert value(registry, "realtime_connection_disconnects_total") == 0

    await comm.disconnect()

    assert value(registry, "realtime_connection_active") == 0
    assert value(registry, "realtime_connection_disconnects_total") == 1
    assert value(registry, "realtime_connection_duration_seconds_count") == 1
    assert value(registry, "realtime_connection_client_errors_total") == 0


async def test_a_wrong_key_is_a_connect_client_error(registry, open_socket, api_key):
    authorization = api_key_authorization("rt-" + "x" * 32)
    await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol(authorization)])

    assert value(registry, "realtime_connection_requests_total") == 1
    assert value(registry, "realtime_connection_client_errors_total") == 1
    assert value(registry, "realtime_connection_server_errors_total") == 0
    assert value(registry, "realtime_connection_success_total") == 0
    assert value(registry, "realtime_connection_active") == 0


async def test_an_authorizer_crash_is_a_connect_server_error(registry, connect, monkeypatch):
    async def broken(**kwargs: Any) -> Any:
        raise RuntimeError("authorizer bug")

    monkeypatch.setattr("realtime.transport.connection.authorize", broken)
    await connect()

    assert value(registry, "realtime_connection_server_errors_total") == 1
    assert value(registry, "realtime_connection_client_errors_total") == 0


async def test_a_slow_consumer_is_counted_when_its_buffer_overflows(registry, connect):
    fast = await connect()
    with override_settings(REALTIME={"OUTBOUND_BUFFER_SIZE": 3}):
        slow = await connect()
    await subscribed(fast, "s1", "/default/*")
    await subscribed(slow, "s1", "/default/*")

    await publish(fast, "p1", "/default/room", [f'"{n}"' for n in range(5)])
    await assert_closed(slow, 1008)

    assert value(registry, "realtime_connection_slow_consumer_total") == 1


# -- subscriptions -------------------------------------------------------------------


async def test_subscribe_and_unsubscribe_move_success_counters_and_the_active_gauge(registry, connect):
    comm = await connect()
    await subscribed(comm, "s1", "/default/a")
    await subscribed(comm, "s2", "/default/*")

    assert value(registry, "realtime_subscribe_success_total", namespace="default") == 2
    assert value(registry, "realtime_subscription_active", namespace="default") == 2

    await unsubscribe(comm, "s1")
    await assert_sent(comm, {"type": "unsubscribe_success", "id": "s1"})

    assert value(registry, "realtime_unsubscribe_success_total", namespace="default") == 1
    assert value(registry, "realtime_subscription_active", namespace="default") == 1

    await comm.disconnect()
    assert value(registry, "realtime_subscription_active", namespace="default") == 0


async def test_unsubscribing_an_unknown_id_is_an_unsubscribe_error(registry, connect):
    comm = await connect()
    await unsubscribe(comm, "nope")
    assert (await comm.receive_json_from())["type"] == "unsubscribe_error"

    assert value(registry, "realtime_unsubscribe_errors_total", namespace="_unknown") == 1


async def test_subscribe_errors_name_the_namespace_only_when_it_exists(registry, connect, guarded):
    @handlers.on_subscribe("guarded")
    def refuse(ctx: Any) -> None:
        raise handlers.Reject("no")

    comm = await connect()
    for sub_id, channel in (("s1", "/guarded/a"), ("s2", "/missing/a"), ("s3", "bad channel")):
        await subscribe(comm, sub_id, channel)
        assert (await comm.receive_json_from())["type"] == "subscribe_error"

    assert value(registry, "realtime_subscribe_client_errors_total", namespace="guarded") == 1
    # An unknown or malformed namespace never becomes a label of its own.
    assert value(registry, "realtime_subscribe_client_errors_total", namespace="_unknown") == 2
    assert value(registry, "realtime_subscribe_client_errors_total", namespace="missing") == 0
    assert value(registry, "realtime_subscribe_server_errors_total", namespace="guarded") == 0
    assert (
        value(registry, "realtime_handler_invocations_total", namespace="guarded", operation="subscribe") == 1
    )


async def test_a_failing_subscribe_handler_is_a_server_error_and_a_handler_error(registry, connect, guarded):
    @handlers.on_subscribe("guarded")
    def broken(ctx: Any) -> None:
        raise RuntimeError("bug")

    comm = await connect()
    await subscribe(comm, "s1", "/guarded/a")
    assert (await comm.receive_json_from())["type"] == "subscribe_error"

    assert value(registry, "realtime_subscribe_server_errors_total", namespace="guarded") == 1
    assert value(registry, "realtime_handler_errors_total", namespace="guarded", operation="subscribe") == 1
    assert (
        value(registry, "realtime_handler_duration_seconds_count", namespace="guarded", operation="subscribe")
        == 1
    )


# -- publish and fan-out ---------------------------------------------------------------


async def test_a_websocket_publish_counts_the_request_events_sizes_and_every_delivery(registry, connect):
    subscribers = [await connect() for _ in range(3)]
    for comm in subscribers:
        await subscribed(comm, "s", "/default/*")
    publisher = await connect()
    events = ['{"n":1}', '"ab"']

    await publish(publisher, "p1", "/default/room", events)
    await assert_published(publisher, "p1", [0, 1])

    assert value(registry, "realtime_publish_success_total", namespace="default", transport="websocket") == 1
    assert value(registry, "realtime_broadcast_events_total", namespace="default") == 2
    # Three subscribers times two events.
    assert value(registry, "realtime_broadcast_deliveries_total", namespace="default") == 6
    assert value(registry, "realtime_broadcast_event_size_bytes_count", namespace="default") == 2
    # The events as they sit in the frame: JSON string literals.
    expected = sum(len(json.dumps(event)) for event in events)
    assert value(registry, "realtime_broadcast_event_size_bytes_sum", namespace="default") == expected


async def test_fan_out_counts_deliveries_once_per_call_not_per_subscriber(registry, connect, monkeypatch):
    comms = [await connect() for _ in range(4)]
    for comm in comms:
        await subscribed(comm, "s", "/default/room")
    calls: list[tuple[str, int]] = []
    monkeypatch.setattr(metrics, "delivered", lambda key, count: calls.append((key, count)))

    await realtime.apublish("/default/room", [1, 2, 3])

    # One call per matching key (the exact path; nobody holds /default/*), with 4 x 3.
    assert calls == [("default/room", 12)]


async def test_an_event_that_is_not_json_is_a_failed_event(registry, connect):
    comm = await connect()
    await publish(comm, "p1", "/default/room", ['{"ok":1}', "{not json"])
    await comm.receive_json_from()

    assert value(registry, "realtime_publish_events_failed_total", namespace="default") == 1
    assert value(registry, "realtime_broadcast_events_total", namespace="default") == 1


async def test_events_left_out_by_on_publish_are_dropped_and_errors_are_failed(registry, connect, guarded):
    @handlers.on_publish("guarded")
    def keep_first_fail_second(ctx: Any) -> list[Any]:
        first, second, _third = ctx.events
        return [first, handlers.OutgoingEvent(second.id, error="refused")]

    comm = await connect()
    await publish(comm, "p1", "/guarded/room", ["1", "2", "3"])
    await comm.receive_json_from()

    assert value(registry, "realtime_publish_events_dropped_total", namespace="guarded") == 1
    assert value(registry, "realtime_publish_events_failed_total", namespace="guarded") == 1
    assert value(registry, "realtime_broadcast_events_total", namespace="guarded") == 1
    assert (
        value(registry, "realtime_handler_invocations_total", namespace="guarded", operation="publish") == 1
    )


async def test_a_refused_websocket_publish_is_a_publish_client_error(registry, connect, guarded):
    @handlers.on_publish("guarded")
    def refuse(ctx: Any) -> None:
        raise handlers.Unauthorized()

    comm = await connect()
    await publish(comm, "p1", "/guarded/room", ["1"])
    await publish(comm, "p2", "/nowhere/room", ["1"])
    assert [frame["type"] for frame in await receive_frames(comm, 2)] == ["publish_error"] * 2

    assert (
        value(registry, "realtime_publish_client_errors_total", namespace="guarded", transport="websocket")
        == 1
    )
    assert (
        value(registry, "realtime_publish_client_errors_total", namespace="_unknown", transport="websocket")
        == 1
    )
    assert value(registry, "realtime_publish_success_total", namespace="guarded", transport="websocket") == 0


async def test_server_code_publishes_are_counted_with_transport_server(registry, default_namespace):
    await realtime.apublish("/default/room", [{"a": 1}])

    assert value(registry, "realtime_publish_success_total", namespace="default", transport="server") == 1


async def test_http_publish_moves_the_http_and_publish_metrics(registry, api_key):
    client = AsyncClient()

    ok = await client.post(
        "/event",
        data=json.dumps({"channel": "/default/room", "events": ['"hi"']}),
        content_type="application/json",
        headers={"x-api-key": api_key},
    )
    refused = await client.post(
        "/event",
        data=json.dumps({"channel": "/default/room", "events": ['"hi"']}),
        content_type="application/json",
    )

    assert (ok.status_code, refused.status_code) == (200, 401)
    assert value(registry, "realtime_http_requests_total") == 2
    assert value(registry, "realtime_http_client_errors_total") == 1
    assert value(registry, "realtime_http_server_errors_total") == 0
    assert value(registry, "realtime_http_request_duration_seconds_count") == 2
    assert value(registry, "realtime_publish_success_total", namespace="default", transport="http") == 1
    assert value(registry, "realtime_publish_client_errors_total", namespace="default", transport="http") == 1


async def test_an_http_publish_that_fails_on_the_server_is_a_5xx_and_a_server_error(
    registry, api_key, monkeypatch
):
    async def down(*args: Any, **kwargs: Any) -> None:
        from realtime.exceptions import ServiceUnavailable

        raise ServiceUnavailable()

    monkeypatch.setattr(bridge, "fan_out", down)
    response = await AsyncClient().post(
        "/event",
        data=json.dumps({"channel": "/default/room", "events": ['"hi"']}),
        content_type="application/json",
        headers={"x-api-key": api_key},
    )

    assert response.status_code == 503
    assert value(registry, "realtime_http_server_errors_total") == 1
    assert value(registry, "realtime_publish_server_errors_total", namespace="default", transport="http") == 1


# -- without prometheus_client -------------------------------------------------------


def test_without_prometheus_client_every_call_is_a_no_op(monkeypatch):
    monkeypatch.setitem(sys.modules, "prometheus_client", None)
    path = REPO_ROOT / "realtime" / "ops" / "metrics.py"
    spec = importlib.util.spec_from_file_location("realtime._metrics_without_prometheus", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    noop: RealtimeMetrics = module.metrics

    assert module.prometheus_client is None and not noop.enabled
    started = noop.connected()
    noop.connect_requested()
    noop.connect_failed(None)
    noop.subscribed("default")
    noop.delivered("default/room", 10)
    noop.broadcast("default", ['"x"'])
    noop.handler_called("default", "PUBLISH", 0.01)
    noop.http_request(500, 0.01)
    noop.disconnected(started, ["default/room"])
    # The dashboard's plain totals still count.
    assert noop.totals["deliveries", "default"] == 10


def test_without_prometheus_client_metrics_says_so(monkeypatch):
    monkeypatch.setattr(exposition, "prometheus_client", None)

    body, content_type = exposition.render()

    assert body == b"# prometheus_client is not installed: no metrics.\n"
    assert content_type == "text/plain; charset=utf-8"


# -- GET /metrics --------------------------------------------------------------------


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(User.objects.create_user("ops", password="x", is_staff=True))
    return client


def families(body: bytes) -> dict[str, Any]:
    return {family.name: family for family in text_string_to_metric_families(body.decode())}


def test_metrics_is_prometheus_text_for_staff(staff_client, default_namespace):
    metrics.connect_requested()
    response = staff_client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    parsed = families(response.content)
    # The parser drops the _total suffix from counter family names.
    assert parsed["realtime_connection_requests"].type == "counter"
    assert parsed["realtime_connection_active"].type == "gauge"
    assert parsed["realtime_handler_duration_seconds"].type == "histogram"
    assert parsed["quiz_join_admitted"].type == "counter"
    [sample] = parsed["realtime_connection_requests"].samples
    assert sample.name == "realtime_connection_requests_total" and sample.value >= 1


@pytest.mark.parametrize(
    ("debug", "token", "headers", "status"),
    [
        (False, None, {}, 403),
        (False, "s3cret-token", {}, 401),
        (False, "s3cret-token", {"Authorization": "Bearer wrong"}, 401),
        (False, "s3cret-token", {"Authorization": "Bearer s3cret-token"}, 200),
        (False, "s3cret-token", {"Authorization": "bearer s3cret-token"}, 200),
        (True, None, {}, 200),
        (True, "s3cret-token", {}, 401),
    ],
)
def test_metrics_protection_for_anonymous_clients(db, debug, token, headers, status):
    with override_settings(DEBUG=debug, REALTIME={"METRICS_TOKEN": token}):
        response = Client().get("/metrics", headers=headers)

    assert response.status_code == status
    if status == 200:
        assert "realtime_connection_requests" in families(response.content)
    if status == 401:
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'


def test_a_staff_user_needs_no_token_and_a_non_staff_user_is_refused(staff_client):
    with override_settings(REALTIME={"METRICS_TOKEN": "t"}):
        assert staff_client.get("/metrics").status_code == 200
        member = Client()
        member.force_login(User.objects.create_user("member", password="x"))
        assert member.get("/metrics").status_code == 401
    assert member.get("/metrics").status_code == 403


@pytest.mark.parametrize(
    ("debug", "token", "warned"), [(False, None, True), (False, "t", False), (True, None, False)]
)
def test_w002_warns_when_production_metrics_have_no_token(debug, token, warned):
    with override_settings(DEBUG=debug, REALTIME={"METRICS_TOKEN": token}):
        ids = [message.id for message in check_metrics_token()]
    assert ids == (["realtime.W002"] if warned else [])


def test_w002_is_a_deployment_check():
    assert check_metrics_token in check_registry.registry.get_checks(include_deployment_checks=True)
    assert check_metrics_token not in check_registry.registry.get_checks(include_deployment_checks=False)


# -- several processes ---------------------------------------------------------------


def _run(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_multiprocess_mode_sums_counters_over_processes_and_gauges_over_live_ones(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}},
        "DJANGO_SETTINGS_MODULE": "config.settings.test",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    setup = (
        "import django; django.setup(); "
        "from realtime.ops.metrics import metrics; from realtime.ops.exposition import render; "
    )
    # The first process counts and exits: its counters stay, its live gauge goes.
    _run(setup + "metrics.connected(); metrics.delivered('default/room', 5)", env)
    body = _run(
        setup
        + "metrics.connected(); metrics.delivered('default/room', 7); "
        + "import sys; sys.stdout.write(render()[0].decode())",
        env,
    )

    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }
    assert samples["realtime_connection_success_total", ()] == 2
    assert samples["realtime_broadcast_deliveries_total", (("namespace", "default"),)] == 12
    assert samples["realtime_connection_active", ()] == 1


# -- presence and server-side control ------------------------------------------------------------


async def test_presence_watchers_and_connections_the_server_ended_are_counted(registry, connect) -> None:
    watcher = await connect()
    await subscribed(watcher, "p", "/$presence/default/room")
    assert value(registry, "realtime_presence_watchers", namespace="default") == 1
    await watcher.receive_json_from(1)  # the snapshot

    await realtime.adisconnect(api_key=(await ApiKey.objects.aget()).pk, reason="gone")
    await assert_closed_after_error(watcher)

    assert value(registry, "realtime_connection_ended_by_server_total", cause="revoked") == 1
    await watcher.disconnect()
    assert value(registry, "realtime_presence_watchers", namespace="default") == 0


async def assert_closed_after_error(comm: Any) -> None:
    frame = await comm.receive_json_from(1)
    assert frame["type"] == "error"
    await assert_closed(comm, 4401)
