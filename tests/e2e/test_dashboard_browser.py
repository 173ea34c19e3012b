"""The live dashboard in a real browser: headless Chromium (Playwright) against a real daphne.

A staff user signs in through the admin, opens ``/realtime/dashboard/``, and watches it update
over the realtime protocol itself (the shipped ``realtime.js``, the session cookie, the
``realtime-ops`` channel): its own connection appears, then a WebSocket subscriber and HTTP
publishes made from outside show up in the numbers, the charts and the per-namespace table, and
joins refused by the front door in the refusals table (by operation and reason).

The server runs ``DEBUG=0`` with the static files collected into a temporary ``STATIC_ROOT``,
as a deployment would. Needs the ``playwright`` package and Debian's ``chromium``
(``/usr/bin/chromium`` or ``$CHROMIUM``); skips without them. Playwright never downloads a browser.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect as ws_connect

from .conftest import REPO_ROOT, DaphneFactory, DaphneServer, StaffLogin, _python

pytestmark = pytest.mark.e2e

sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 15_000
PUBLISHES = 5


@pytest.fixture(scope="module")
def chromium() -> str:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium, or set $CHROMIUM)")
    return CHROMIUM


@pytest.fixture(scope="module")
def static_root(e2e_workdir: Path, e2e_env: dict[str, str]) -> Path:
    """``manage.py collectstatic`` into a temporary ``STATIC_ROOT``, as a deployment does."""
    root = e2e_workdir / "dashboard-static"
    subprocess.run(
        [_python(), "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=REPO_ROOT,
        env={**e2e_env, "STATIC_ROOT": str(root)},
        check=True,
        timeout=60,
    )
    return root


@pytest.fixture
def server(daphne_factory: DaphneFactory, static_root: Path) -> DaphneServer:
    # One join per client and hour: the second and third joins below are refused by rate.
    (started,) = daphne_factory("dashboard", STATIC_ROOT=str(static_root), QUIZ_JOIN_RATE_PER_CLIENT="1/h")
    return started


@pytest.fixture
def page(
    chromium: str, server: DaphneServer, e2e_staff_login: StaffLogin, e2e_workdir: Path
) -> Iterator[Any]:
    """A signed-in staff member's tab on the dashboard."""
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            tab = browser.new_page(viewport={"width": 1280, "height": 900})
            tab.set_default_timeout(WAIT_MS)
            errors: list[str] = []
            tab.on("pageerror", lambda error: errors.append(str(error)))
            tab.goto(f"{server.http_url}/realtime/dashboard/")
            # Not signed in: the admin's login form first, then back to the dashboard.
            tab.fill("#id_username", e2e_staff_login.username)
            tab.fill("#id_password", e2e_staff_login.password)
            tab.click("input[type=submit]")
            tab.wait_for_url(f"{server.http_url}/realtime/dashboard/")
            yield tab
            tab.screenshot(path=str(e2e_workdir / "dashboard.png"), full_page=True)
            assert errors == [], f"the page raised: {errors}"
        finally:
            browser.close()


def _value(page: Any, selector: str) -> float:
    return float(page.get_attribute(selector, "data-value") or 0)


def _wait_for(page: Any, script: str, arg: Any = None) -> None:
    page.wait_for_function(script, arg=arg, timeout=WAIT_MS)


def _header_subprotocol(server: DaphneServer) -> str:
    raw = json.dumps({"x-api-key": server.api_key, "host": server.authority}).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _http_publish(server: DaphneServer, events: list[str]) -> dict[str, Any]:
    request = urllib.request.Request(
        server.event_url,
        data=json.dumps({"channel": "/default/dashboard", "events": events}).encode(),
        headers={"content-type": "application/json", "x-api-key": server.api_key},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def test_the_dashboard_updates_live_with_connections_publishes_and_deliveries(page, server):
    # The page's own WebSocket is up and subscribed; the first snapshots arrive every second.
    _wait_for(page, "() => document.querySelector('#state').dataset.state === 'connected'")
    _wait_for(page, "() => Number(document.querySelector('#kpi-connections').dataset.value) >= 1")
    _wait_for(page, "() => document.querySelector('#processes').dataset.value === '1'")
    assert page.text_content("#problem") == ""
    assert page.locator("tr[data-namespace='realtime-ops']").count() == 1

    # Someone else connects and subscribes, and 5 publishes of 2 events go out over HTTP.
    with ws_connect(server.ws_url, subprotocols=["aws-appsync-event-ws", _header_subprotocol(server)]) as ws:
        ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(ws.recv(timeout=5))["type"] == "connection_ack"
        ws.send(json.dumps({"type": "subscribe", "id": "s1", "channel": "/default/*"}))
        frames = [json.loads(ws.recv(timeout=5)) for _ in range(2)]
        assert {"type": "subscribe_success", "id": "s1"} in frames
        _wait_for(page, "() => Number(document.querySelector('#kpi-connections').dataset.value) >= 2")

        for number in range(PUBLISHES):
            result = _http_publish(server, [json.dumps({"n": number}), json.dumps({"n": -number})])
            assert len(result["successful"]) == 2

        row = "tr[data-namespace='default']"
        _wait_for(
            page,
            "([cell, total]) => Number(document.querySelector(cell)?.dataset.value) === total",
            [f"{row} [data-key='publishes-total']", PUBLISHES],
        )
        assert _value(page, f"{row} [data-key='subscriptions']") == 1
        assert _value(page, f"{row} [data-key='dropped']") == 0
        assert _value(page, f"{row} [data-key='failed']") == 0
        # Occupancy: the wildcard among the busiest channels (the dashboard's own channel left
        # out), and a presence watcher counted for its namespace.
        ws.send(json.dumps({"type": "subscribe", "id": "p1", "channel": "/$presence/default/*"}))
        busiest = "tr[data-channel='/default/*']"
        _wait_for(
            page,
            "(cell) => document.querySelector(cell)?.dataset.value === '1'",
            f"{row} [data-key='watchers']",
        )
        assert _value(page, f"{busiest} [data-key='subscriptions']") == 1
        assert _value(page, f"{busiest} [data-key='connections']") == 1
        assert page.locator("#channels tr[data-channel='/realtime-ops/dashboard']").count() == 0

    # The rates made it into the charts (10 deliveries within a second or two), and the
    # subscriber's departure shows up as well.
    _wait_for(page, "() => Number(document.querySelector('#chart-publishes').dataset.max) > 0")
    _wait_for(page, "() => Number(document.querySelector('#chart-deliveries').dataset.max) > 0")
    _wait_for(page, "() => Number(document.querySelector('#kpi-connections').dataset.value) === 1")
    points = int(page.get_attribute("#chart-connections", "data-points") or 0)
    assert points >= 3
    assert page.locator("#chart-connections polyline").count() == 1
    assert _value(page, "#kpi-errors") == 0


def _join(server: DaphneServer) -> int:
    request = urllib.request.Request(
        f"{server.http_url}/api/quiz/games/NOGAME/join",
        data=b'{"nickname": "ada"}',
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def test_the_dashboard_shows_refusals_by_operation_and_reason(page, server):
    _wait_for(page, "() => document.querySelector('#processes').dataset.value === '1'")
    assert page.locator("#refusals tbody tr").count() == 0

    # The client's one join of the hour reaches the view (no such game), the next two do not.
    assert [_join(server) for _ in range(3)] == [404, 429, 429]

    row = "#refusals tr[data-operation='quiz.join'][data-reason='rate']"
    _wait_for(
        page,
        "([cell, total]) => Number(document.querySelector(cell)?.dataset.value) === total",
        [f"{row} [data-key='count']", 2],
    )
    assert page.text_content(f"{row} th") == "quiz.join"
    assert page.text_content(f"{row} [data-key='reason']") == "rate"
    # Nothing was shed for overload, and no other operation was refused.
    assert page.locator("#refusals tbody tr").count() == 1
