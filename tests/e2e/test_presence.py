"""Occupancy and connection handlers with real servers, Redis and the unmodified Amplify client.

Each Amplify client is a Node process of its own (``amplify/live_client.mjs``), so that clients
can hold sockets on different servers; it prints what it sees as JSON lines, stamped with the
machine's clock.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO_ROOT, DaphneFactory, DaphneServer, RedisServer, _manage, _start_daphne
from .refusing import REFUSED_LINE
from .test_amplify import node_env

pytestmark = [pytest.mark.e2e, pytest.mark.node]

SCRIPT = Path(__file__).resolve().parent / "amplify" / "live_client.mjs"
PRESENCE_SETTINGS = "tests.e2e.settings_presence"
# tests/e2e/settings_presence.py
PROCESS_TTL = 3.0
# The bound for a change to reach a watcher on another process.
UPDATE_BOUND = 2.0
STEP = 20.0
# How long revoked Amplify clients are watched for reconnection attempts (it retries after 5 s).
AMPLIFY_WATCH = 20.0
CONNECTED = ["Connecting", "Connected"]


class LiveClient:
    """One Amplify client subscribed to one channel, in a Node process of its own."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def start(
        cls, node: str, server: DaphneServer, channel: str, api_key: str | None = None
    ) -> LiveClient:
        process = await asyncio.create_subprocess_exec(
            node,
            str(SCRIPT),
            channel,
            cwd=REPO_ROOT,
            env={**node_env(server), **({"RT_API_KEY": api_key} if api_key else {})},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            self.lines.append(json.loads(raw))
            self._changed.set()

    async def wait_for(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = STEP, after: int = 0
    ) -> dict[str, Any]:
        """The first line from the ``after``-th on (printed or to come) that satisfies ``predicate``."""
        deadline = time.monotonic() + within
        while True:
            for line in self.lines[after:]:
                if predicate(line):
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no matching line within {within}s; the client printed {self.lines}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                pass

    async def ready(self) -> float:
        """Waits for the subscription's acknowledgement; its time (seconds since the epoch)."""
        line = await self.wait_for(
            lambda line: "ready" in line or "readyError" in line or "connectError" in line
        )
        assert line.get("ready") is True, self.lines
        return line["at"] / 1000

    def events(self) -> list[Any]:
        return [line["event"] for line in self.lines if "event" in line]

    async def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(b"close\n")
        await self.process.stdin.drain()
        await self.wait_for(lambda line: line.get("closed") is True)

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
        await self.process.wait()
        self._reader.cancel()


@pytest.fixture
async def clients() -> AsyncIterator[Callable[..., Any]]:
    started: list[LiveClient] = []

    async def start(node: str, server: DaphneServer, channel: str, api_key: str | None = None) -> LiveClient:
        client = await LiveClient.start(node, server, channel, api_key)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.stop()


def counts(channel: str, subscriptions: int) -> Callable[[dict[str, Any]], bool]:
    """A watcher line that reports ``subscriptions`` subscriptions from as many connections."""
    expected = {
        "type": "occupancy",
        "channel": channel,
        "subscriptions": subscriptions,
        "connections": subscriptions,
    }
    return lambda line: line.get("event") == expected


async def test_an_amplify_watcher_follows_occupancy_across_two_processes_and_a_killed_one(
    node_executable: str,
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    e2e_workdir: Path,
    e2e_env: dict[str, str],
    e2e_api_key: str,
    tls_files: tuple[Path, Path, Path],
    clients: Callable[..., Any],
) -> None:
    env = {"REDIS_URL": redis_server.url, "DJANGO_SETTINGS_MODULE": PRESENCE_SETTINGS}
    (stays,) = daphne_factory("stays", tls=True, **env)
    # Killed with SIGKILL below: started outside the factory, which fails on a dead server.
    doomed = await asyncio.to_thread(
        _start_daphne,
        workdir=e2e_workdir,
        name=f"doomed-{uuid.uuid4().hex[:6]}",
        env={**e2e_env, **env},
        tls=tls_files,
        api_key=lambda: e2e_api_key,
    )
    try:
        channel = f"/default/presence-{uuid.uuid4().hex[:10]}"
        watcher = await clients(node_executable, stays, f"/$presence{channel}")
        await watcher.ready()
        await watcher.wait_for(counts(channel, 0), within=UPDATE_BOUND)

        first = await clients(node_executable, stays, channel)
        leaving = await clients(node_executable, stays, channel)
        remote = await clients(node_executable, doomed, channel)
        all_ready = max([await first.ready(), await leaving.ready(), await remote.ready()])
        three = await watcher.wait_for(counts(channel, 3))
        assert three["at"] / 1000 - all_ready <= UPDATE_BOUND, watcher.lines

        closing, seen = time.time(), len(watcher.lines)
        await leaving.close()
        two = await watcher.wait_for(counts(channel, 2), after=seen)
        assert two["at"] / 1000 - closing <= UPDATE_BOUND, watcher.lines

        killed, seen = time.time(), len(watcher.lines)
        doomed.process.kill()
        await asyncio.to_thread(doomed.process.wait)
        one = await watcher.wait_for(counts(channel, 1), after=seen)
        assert one["at"] / 1000 - killed <= PROCESS_TTL + UPDATE_BOUND, watcher.lines

        # Nothing but occupancy reached the watcher, and no count it never had.
        history = [event["subscriptions"] for event in watcher.events()]
        assert history[0] == 0 and history[-1] == 1 and max(history) == 3, history
        assert all(event["channel"] == channel for event in watcher.events())
    finally:
        doomed.stop()


async def test_an_on_connect_refusal_is_final_for_amplify(
    node_executable: str, start_tls_daphne: Callable[..., DaphneServer], clients: Callable[..., Any]
) -> None:
    server = start_tls_daphne("tests.e2e.settings_refusing")
    since = server.log_size()

    client = await clients(node_executable, server, "/default/refused")
    line = await client.wait_for(lambda line: "connectError" in line or "ready" in line)
    # Long enough for Amplify's retries (1 s, 2 s, ...) had it retried.
    await asyncio.sleep(4)

    assert line["connectError"] == {"name": "Error", "message": "BadRequestException"}
    assert server.log_text(since).count(REFUSED_LINE) == 1
    server.assert_no_traceback(since)


def post_event(server: DaphneServer, channel: str, event: Any) -> int:
    """``POST /event`` with the session's key; the status."""
    body = json.dumps({"channel": channel, "events": [json.dumps(event)]}).encode()
    request = urllib.request.Request(
        server.event_url, data=body, headers={"content-type": "application/json", "x-api-key": server.api_key}
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=server.ssl_context())
    )
    with opener.open(request, timeout=10) as response:
        return response.status


async def test_revoking_a_key_closes_its_amplify_clients_on_both_processes_and_no_other(
    node_executable: str,
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    clients: Callable[..., Any],
) -> None:
    env = {"REDIS_URL": redis_server.url, "DJANGO_SETTINGS_MODULE": PRESENCE_SETTINGS}
    first, second = daphne_factory("first", "second", tls=True, **env)
    created = await asyncio.to_thread(
        _manage, e2e_env, "realtime_apikey", "create", "--description", "doomed"
    )
    doomed_key = created.strip().splitlines()[-1]
    channel = f"/default/revoked-{uuid.uuid4().hex[:10]}"
    doomed = [await clients(node_executable, server, channel, doomed_key) for server in (first, second)]
    kept = [await clients(node_executable, server, channel) for server in (first, second)]
    for client in (*doomed, *kept):
        await client.ready()

    # Revoked from a command-line process: it reaches both servers through Redis, before the
    # command has even exited.
    await asyncio.to_thread(_manage, {**e2e_env, **env}, "realtime_apikey", "revoke", doomed_key[:11])
    revoked = time.time()
    for client in doomed:
        line = await client.wait_for(lambda line: line.get("state") == "ConnectionDisrupted")
        assert line["at"] / 1000 - revoked <= 1.0, client.lines

    await asyncio.sleep(2)
    assert await asyncio.to_thread(post_event, first, channel, {"after": "revocation"}) == 200
    for client in kept:
        await client.wait_for(lambda line: line.get("event") == {"after": "revocation"})
    # What Amplify 6.22.1 does next (PROTOCOL §12): the close (whatever its code) is a
    # disruption, and it reconnects once, 5 s later; the revoked key is refused with
    # connection_error UnauthorizedException, which it treats as final: the subscription
    # fails, the client ends Disconnected and no other attempt follows.
    await asyncio.sleep(max(0.0, revoked + AMPLIFY_WATCH - time.time()))
    for client in doomed:
        assert client.events() == [], client.lines
        states = [line["state"] for line in client.lines if "state" in line]
        errors = [line["error"] for line in client.lines if "error" in line]
        assert states == [
            *CONNECTED,
            "ConnectionDisrupted",
            "Connecting",
            "ConnectionDisrupted",
            "Disconnected",
        ]
        assert errors == [{"errors": ["Connection failed: UnauthorizedException"]}]
