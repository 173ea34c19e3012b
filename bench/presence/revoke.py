"""The revocation scenario of ``python -m bench.presence --scenario revoke``.

Two daphne processes share Redis. N sockets opened with one API key (half on each process) and
M with another subscribe to one channel. The key is revoked in this process, through the same
service the admin and ``manage.py realtime_apikey revoke`` call (Django is set up here on the
servers' database and Redis). Measured: the time from the revocation to the last of the N
sockets closed, and whether the key's sockets all got ``error`` + 4401. Two seconds later an
event is published over HTTP with the other key: it must reach all M sockets and none of the N.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from typing import Any

from bench.fanout.servers import PROJECT_ROOT, BenchError, OurSite, Server, our_env
from bench.fanout.wsclient import WSClient, connect

REVOKED_CLOSE = 4401


class Member:
    """One socket: acknowledged, subscribed, then either closed by the server or still receiving."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.client: WSClient | None = None
        self.acked = loop.create_future()
        self.subscribed = loop.create_future()
        self.closed = loop.create_future()
        self.frames: list[dict[str, Any]] = []

    def on_text(self, payload: bytes, now: float) -> None:
        frame = json.loads(payload)
        self.frames.append(frame)
        kind = frame.get("type")
        if kind == "connection_ack" and not self.acked.done():
            self.acked.set_result(now)
        elif kind == "subscribe_success" and not self.subscribed.done():
            self.subscribed.set_result(now)

    def on_close(self) -> None:
        if not self.closed.done():
            self.closed.set_result(time.perf_counter())

    async def open(self, server: Server, subprotocols: list[str], channel: str) -> None:
        target = server.target()
        self.client = await connect(
            target["host"], target["port"], target["path"], subprotocols, self.on_text
        )
        self.client.on_close = self.on_close
        self.client.send_text(b'{"type":"connection_init"}')
        await asyncio.wait_for(self.acked, 30)
        self.client.send_text(json.dumps({"type": "subscribe", "id": "s", "channel": channel}))
        await asyncio.wait_for(self.subscribed, 30)

    def data(self) -> list[Any]:
        return [json.loads(f["event"]) for f in self.frames if f.get("type") == "data"]


def create_key(site: OurSite, description: str) -> str:
    proc = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "manage.py"),
            "realtime_apikey",
            "create",
            "--description",
            description,
        ],
        cwd=PROJECT_ROOT,
        env=our_env(site.database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(f"realtime_apikey create failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1]


def setup_django(site: OurSite, redis_url: str) -> None:
    """Configure this process like the servers (their database and Redis)."""
    os.environ.update(our_env(site.database_url, redis_url))
    import django

    django.setup()


def revoke_key(prefix: str) -> None:
    """Revoke through the service the admin and ``realtime_apikey revoke`` call."""
    from realtime.store.services import apikey_revoke

    apikey_revoke(prefix=prefix)


def post(server: Server, api_key: str, channel: str, event: Any) -> int:
    body = json.dumps({"channel": channel, "events": [json.dumps(event)]}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.port}/event",
        data=body,
        headers={"content-type": "application/json", "x-api-key": api_key},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=10) as response:
        return int(response.status)


async def measure(
    site: OurSite, servers: list[Server], redis_url: str, doomed_count: int, kept_count: int, concurrency: int
) -> dict[str, Any]:
    from bench.fanout.servers import auth_subprotocols

    doomed_key = await asyncio.to_thread(create_key, site, "bench-doomed")
    channel = f"/default/revoke-{uuid.uuid4().hex[:10]}"
    doomed = [Member() for _ in range(doomed_count)]
    kept = [Member() for _ in range(kept_count)]
    gate = asyncio.Semaphore(concurrency)

    async def open_one(index: int, member: Member, key: str) -> None:
        server = servers[index % len(servers)]
        async with gate:
            await member.open(server, auth_subprotocols(key, f"127.0.0.1:{server.port}"), channel)

    await asyncio.gather(
        *(open_one(i, m, doomed_key) for i, m in enumerate(doomed)),
        *(open_one(i, m, site.api_key) for i, m in enumerate(kept)),
    )
    await asyncio.to_thread(setup_django, site, redis_url)
    started = time.perf_counter()
    await asyncio.to_thread(revoke_key, doomed_key[:11])
    committed = time.perf_counter()
    try:
        closes = await asyncio.wait_for(asyncio.gather(*(m.closed for m in doomed)), 10)
    except TimeoutError:
        closes = [m.closed.result() for m in doomed if m.closed.done()]
    last_close = max(closes) - started if closes else None
    await asyncio.sleep(max(0.0, started + 2.0 - time.perf_counter()))
    status = await asyncio.to_thread(post, servers[0], site.api_key, channel, {"after": "revocation"})
    await asyncio.sleep(1.0)
    kept_received = sum(1 for m in kept if {"after": "revocation"} in m.data())
    doomed_received = sum(1 for m in doomed if m.data())
    told = sum(
        1
        for m in doomed
        if any(
            f.get("type") == "error" and f["errors"][0]["errorType"] == "UnauthorizedException"
            for f in m.frames
        )
    )
    for member in (*doomed, *kept):
        if member.client is not None:
            member.client.close()
    return {
        "processes": len(servers),
        "revoked_sockets": doomed_count,
        "other_sockets": kept_count,
        "revocation_call_s": round(committed - started, 3),
        "closed": len(closes),
        "last_close_after_revocation_s": None if last_close is None else round(last_close, 3),
        "told_why": told,
        "publish_2s_later_status": status,
        "publish_reached_other_sockets": kept_received,
        "publish_reached_revoked_sockets": doomed_received,
        "goal": "revoked sockets closed within 1 s; a publish 2 s later reaches the others, none of them",
        "goal_met": bool(
            len(closes) == doomed_count
            and last_close is not None
            and last_close <= 1.0
            and kept_received == kept_count
            and doomed_received == 0
        ),
    }
