"""``publish_on_commit`` across a crash: a server killed between the commit and the publish loses nothing.

Two daphne processes share a private Redis and the session's SQLite database
(``conftest.py``). The *writer* commits events through ``POST /e2e/commit``
(``tests/e2e/urls_relay.py``) with no relay running anywhere (``REALTIME_RELAY=external``), and is
SIGKILLed; the *listener* holds a real WebSocket subscriber (the ``websockets`` library). Then a
relay comes back, either way a site runs one: the writer restarts with its relay in the process,
or ``manage.py realtime_relay`` starts beside the servers. The subscriber gets each event exactly
once, identified by its key, and nothing else.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    SHUTDOWN_TIMEOUT,
    STARTUP_TIMEOUT,
    DaphneFactory,
    DaphneServer,
    RedisServer,
    _start_daphne,
    database_of_its_own,
)
from .test_daphne import TIMEOUT, assert_silent, handshake, open_socket, recv_frames, subscribe
from .test_multiprocess import get, new_run

pytestmark = pytest.mark.e2e

RELAY_SETTINGS = "tests.e2e.settings_relay"


def _commit(server: DaphneServer, channel: str, events: list[dict[str, Any]], key: str) -> int:
    request = urllib.request.Request(
        server.http_url + "/e2e/commit",
        data=json.dumps({"channel": channel, "events": events, "key": key}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=TIMEOUT) as response:
        return response.status


async def commit(server: DaphneServer, channel: str, events: list[dict[str, Any]], key: str) -> int:
    return await asyncio.to_thread(_commit, server, channel, events, key)


def pending(database: Path, key_prefix: str) -> list[str]:
    """Keys still waiting for a relay, read straight from the servers' database."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT key FROM realtime_pendingpublication WHERE key LIKE ? ORDER BY id", (key_prefix + "%",)
        ).fetchall()
    return [key for (key,) in rows]


@pytest.fixture
def writers(e2e_workdir: Path, e2e_env: dict[str, str], e2e_api_key: str) -> Iterator[Any]:
    """Start writer daphnes this test may kill; each left running is stopped, and none may log a Traceback."""
    started: list[DaphneServer] = []

    def start(name: str, **extra_env: str) -> DaphneServer:
        env = {**e2e_env, **extra_env}
        server = _start_daphne(workdir=e2e_workdir, name=name, env=env, tls=None, api_key=lambda: e2e_api_key)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            server.stop()
    for server in started:
        server.assert_no_traceback()


@pytest.mark.parametrize("relay", ["restarted-server", "relay-command"])
async def test_events_committed_by_a_server_killed_before_its_relay_ran_are_delivered_once_after_restart(
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    writers: Any,
    manage_command: Any,
    e2e_env: dict[str, str],
    relay: str,
    tmp_path: Path,
) -> None:
    # A database of its own: the session's servers would adopt these rows once
    # they waited RELAY_ADOPT_AFTER, if this test's relay were slow.
    database = tmp_path / "relay.sqlite3"
    database_url = database_of_its_own(e2e_env, database)
    site = {
        "DJANGO_SETTINGS_MODULE": RELAY_SETTINGS,
        "REDIS_URL": redis_server.url,
        "DATABASE_URL": database_url,
    }
    (listener,) = daphne_factory("relay-listener", REALTIME_RELAY="external", **site)
    writer = writers("relay-writer", REALTIME_RELAY="external", **site)
    run = new_run()
    channel = f"/default/relay{run}/room"
    key = f"e2e-{run}"

    async with open_socket(listener) as ws:
        await handshake(ws)
        await subscribe(ws, "s", channel)

        # Committed, twice under one key (a retried write), and no relay anywhere.
        assert await commit(writer, channel, [{"n": 1}], key) == 201
        assert await commit(writer, channel, [{"n": 2}], key) == 201
        assert await commit(writer, channel, [{"n": 3}, {"n": 4}], key + "-pair") == 201
        assert pending(database, key) == [key, key + "-pair"]

        writer.process.send_signal(signal.SIGKILL)
        assert writer.process.wait(timeout=SHUTDOWN_TIMEOUT) == -signal.SIGKILL
        await assert_silent(ws, 0.5)

        if relay == "restarted-server":
            # The writer's process again, its relay inside this time: its first request starts it.
            restarted = writers("relay-writer-restarted", REALTIME_RELAY="inprocess", **site)
            assert await get(restarted, "/healthz") == (200, {"status": "ok"})
        else:
            manage_command("realtime_relay", REALTIME_RELAY="external", **site)

        # The relay's process (the server again, or the command) starts Django first.
        frames = await recv_frames(ws, 3, within=STARTUP_TIMEOUT)
        assert [{**frame, "event": json.loads(frame["event"])} for frame in frames] == [
            {"type": "data", "id": "s", "event": {"n": 1, "identifier": key}},
            {"type": "data", "id": "s", "event": {"n": 3, "identifier": f"{key}-pair#0"}},
            {"type": "data", "id": "s", "event": {"n": 4, "identifier": f"{key}-pair#1"}},
        ]
        # Exactly once: nothing else arrives, and nothing is left to publish.
        await assert_silent(ws, 1.5)
        assert pending(database, key) == []
