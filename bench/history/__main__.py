"""``python -m bench.history``: what channel history costs, and a reconnect storm (PROTOCOL §12).

One daphne process on a private ``redis-server`` (channel layer and history store), a fresh
SQLite database with two namespaces: ``plain`` (no history) and ``hist`` (``history_size`` 300).

1. **Cost.** The same connections hold one subscription on ``/plain/room`` and one on
   ``/hist/room`` each; a publisher sends single-event publishes to one channel, then to the
   other, in alternating rounds, waiting for every subscriber to have each event. The server
   process's CPU time per publish is compared, history over no history, in the same run.
2. **Storm.** As many clients follow ``/hist/storm``; every socket is dropped at once; during an
   outage of a few seconds the publisher sends the events they miss; then all reconnect at once
   and re-subscribe with ``since``. Measured: the time until the last client has every missed
   event; checked: each got all of them, in order, with consecutive offsets, ``recovered: true``,
   and nothing twice.

Prints a report, or ``--json``; exit status 1 when a goal is missed (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.fanout.servers import (
    PROJECT_ROOT,
    WS_PATH,
    BenchError,
    OurSite,
    auth_subprotocols,
    cpu_seconds,
    default_python,
    free_port,
    make_workdir,
    our_env,
    remove_workdir,
)
from bench.fanout.wsclient import HandshakeError, WSClient, connect

HOST = "127.0.0.1"
ASGI = "config.asgi:application"
COST_GOAL = 1.15  # history costs at most 15 % more server CPU per publish
STORM_GOAL_S = 5.0
SETTLE_S = 0.5
_ID_AT = len(b'{"type":"data","id":"')
CONNECT_BATCH = 200
CONNECT_ATTEMPTS = 10


@dataclass(slots=True)
class Follower:
    """One client's view: events and offsets per subscription, in arrival order."""

    client: WSClient | None = None
    acks: dict[str, dict[str, Any]] = field(default_factory=dict)
    data: dict[str, list[tuple[int | None, Any]]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    parse: bool = False
    done_at: float | None = None
    expect: int = 0
    retries: int = 0
    connected_at: float | None = None
    acked_at: float | None = None

    def on_text(self, payload: bytes, now: float) -> None:
        if payload.startswith(b'{"type":"data"'):
            if self.parse:
                frame = json.loads(payload)
                self.data.setdefault(frame["id"], []).append(
                    (frame.get("offset"), json.loads(frame["event"]))
                )
                if self.expect and len(self.data[frame["id"]]) == self.expect:
                    self.done_at = now
            else:
                sub_id = payload[_ID_AT : _ID_AT + 4].decode()  # the benchmark's ids are 4 characters
                self.counts[sub_id] = self.counts.get(sub_id, 0) + 1
        elif payload.startswith(b'{"type":"subscribe_'):
            frame = json.loads(payload)
            self.acks[frame["id"]] = frame
            self.acked_at = now
        elif payload.startswith(b'{"type":"connection_ack"'):
            self.connected_at = now


def credentials(key: str, port: int) -> list[str]:
    return auth_subprotocols(key, f"{HOST}:{port}")


async def open_follower(
    port: int, key: str, subscriptions: dict[str, dict[str, Any]], parse: bool, expect: int = 0
) -> Follower:
    follower = Follower(parse=parse, expect=expect)
    for attempt in range(CONNECT_ATTEMPTS):
        try:
            follower.client = await connect(
                HOST, port, WS_PATH, auth_subprotocols(key, f"{HOST}:{port}"), follower.on_text
            )
            break
        except (TimeoutError, OSError, HandshakeError):
            # A crowd may overflow the listen queue: retry with jitter, as real clients do.
            if attempt + 1 == CONNECT_ATTEMPTS:
                raise
            follower.retries += 1
            await asyncio.sleep(random.uniform(0.05, 0.25) * (attempt + 1))
    follower.client.send_text('{"type":"connection_init"}')
    for sub_id, extra in subscriptions.items():
        follower.client.send_text(json.dumps({"type": "subscribe", "id": sub_id, **extra}))
    return follower


async def open_many(n: int, port: int, key: str, subscriptions: Any, parse: bool) -> list[Follower]:
    """``subscriptions(i)`` names follower i's subscriptions; connects in batches (a steady crowd)."""
    followers: list[Follower] = []
    for start in range(0, n, CONNECT_BATCH):
        batch = range(start, min(n, start + CONNECT_BATCH))
        followers += await asyncio.gather(*(open_follower(port, key, subscriptions(i), parse) for i in batch))
    await until(lambda: all(len(f.acks) == len(subscriptions(0)) for f in followers), 30, "subscribe_success")
    return followers


async def until(predicate: Any, within_s: float, what: str) -> None:
    deadline = time.monotonic() + within_s
    while not predicate():
        if time.monotonic() > deadline:
            raise BenchError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class Publisher:
    """One WebSocket publisher: each publish waits for its publish_success."""

    def __init__(self) -> None:
        self.answered: asyncio.Queue[bytes] = asyncio.Queue()
        self.client: WSClient | None = None
        self.sent = 0

    async def open(self, port: int, key: str) -> None:
        self.client = await connect(
            HOST,
            port,
            WS_PATH,
            auth_subprotocols(key, f"{HOST}:{port}"),
            lambda p, _: self.answered.put_nowait(p),
        )
        self.client.send_text('{"type":"connection_init"}')

    async def publish(self, channel: str, value: Any) -> None:
        assert self.client is not None
        self.sent += 1
        frame = {"type": "publish", "id": f"p{self.sent}", "channel": channel, "events": [json.dumps(value)]}
        self.client.send_text(json.dumps(frame))
        while True:
            reply = json.loads(await asyncio.wait_for(self.answered.get(), 10))
            if reply.get("id") == frame["id"]:
                if reply["type"] != "publish_success" or reply["failed"]:
                    raise BenchError(f"publish failed: {reply}")
                return


async def cost(
    port: int, pid: int, key: str, subscribers: int, publishes: int, rounds: int
) -> dict[str, Any]:
    channels = {"pln1": "/plain/room", "hst1": "/hist/room"}
    followers = await open_many(
        subscribers, port, key, lambda i: {sub: {"channel": ch} for sub, ch in channels.items()}, parse=False
    )
    publisher = Publisher()
    await publisher.open(port, key)
    per_publish: dict[str, list[float]] = {"pln1": [], "hst1": []}
    for _ in range(rounds):
        for sub_id, channel in channels.items():
            target = followers[0].counts.get(sub_id, 0) + publishes
            before = cpu_seconds(pid)
            for n in range(publishes):
                await publisher.publish(channel, {"n": n, "pad": "x" * 100})
            await until(
                lambda s=sub_id, t=target: all(f.counts.get(s, 0) >= t for f in followers), 60, "fan-out"
            )
            per_publish[sub_id].append((cpu_seconds(pid) - before) / publishes)
    for follower in followers:
        assert follower.client is not None
        follower.client.close()
    plain = statistics.median(per_publish["pln1"])
    history = statistics.median(per_publish["hst1"])
    return {
        "subscribers": subscribers,
        "publishes_per_round": publishes,
        "rounds": rounds,
        "cpu_ms_per_publish_plain": round(plain * 1000, 3),
        "cpu_ms_per_publish_history": round(history * 1000, 3),
        "rounds_plain_ms": [round(v * 1000, 3) for v in per_publish["pln1"]],
        "rounds_history_ms": [round(v * 1000, 3) for v in per_publish["hst1"]],
        "ratio": round(history / plain, 3),
        "goal": COST_GOAL,
        "pass": history / plain <= COST_GOAL,
    }


async def storm(port: int, key: str, clients: int, missed: int, outage: float) -> dict[str, Any]:
    channel = "/hist/storm"
    followers = await open_many(clients, port, key, lambda i: {"strm": {"channel": channel}}, parse=True)
    publisher = Publisher()
    await publisher.open(port, key)
    for n in range(3):
        await publisher.publish(channel, {"n": -3 + n})
    await until(lambda: all(len(f.data.get("strm", [])) == 3 for f in followers), 30, "the first events")
    positions = [{"offset": f.data["strm"][-1][0], "epoch": f.acks["strm"]["epoch"]} for f in followers]
    # The network drops: every socket at once, without a close handshake.
    for follower in followers:
        assert follower.client is not None
        follower.client.abort()
    for n in range(missed):
        await publisher.publish(channel, {"n": n})
        await asyncio.sleep(outage / missed)
    started = time.perf_counter()
    again = await asyncio.gather(
        *(
            open_follower(
                port, key, {"strm": {"channel": channel, "since": position}}, parse=True, expect=missed
            )
            for position in positions
        )
    )
    await until(lambda: all(f.done_at is not None for f in again), 60, "every replay")
    slowest = max(f.done_at for f in again if f.done_at is not None) - started
    await asyncio.sleep(SETTLE_S)
    complete = 0
    for follower, position in zip(again, positions, strict=True):
        want = [(position["offset"] + 1 + n, {"n": n}) for n in range(missed)]
        if follower.acks["strm"].get("recovered") is True and follower.data.get("strm") == want:
            complete += 1
        assert follower.client is not None
        follower.client.close()
    return {
        "clients": clients,
        "missed_each": missed,
        "outage_s": outage,
        "slowest_recovery_s": round(slowest, 3),
        # Where the time went: every client connected (connection_ack), then subscribed.
        "last_connection_ack_s": round(max(f.connected_at or 0 for f in again) - started, 3),
        "last_subscribe_success_s": round(max(f.acked_at or 0 for f in again) - started, 3),
        "complete_in_order_no_duplicates": complete,
        "connect_retries": sum(f.retries for f in again),
        "goal_s": STORM_GOAL_S,
        "pass": complete == clients and slowest <= STORM_GOAL_S,
    }


def prepare(workdir: Path, python: str) -> OurSite:
    site = OurSite.prepare(workdir, python)
    code = (
        "from realtime.models import Namespace as N; "
        "N.objects.get_or_create(name='plain'); "
        "N.objects.get_or_create(name='hist', defaults={'history_size': 300})"
    )
    subprocess.run(
        [python, str(PROJECT_ROOT / "manage.py"), "shell", "-c", code],
        cwd=PROJECT_ROOT,
        env=our_env(site.database_url),
        check=True,
        capture_output=True,
        timeout=120,
    )
    return site


def start_redis(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    executable = shutil.which("redis-server")
    if executable is None:
        raise BenchError("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [executable, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        stdout=(workdir / "redis.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    time.sleep(0.5)
    return process, f"redis://{HOST}:{port}/0"


def start_daphne(
    workdir: Path, python: str, site: OurSite, redis_url: str
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    process = subprocess.Popen(
        # A listen queue for a crowd (docs/DEPLOYMENT.md): the storm connects all at once.
        [python, "-m", "daphne", "-e", f"tcp:port={port}:interface={HOST}:backlog=1024", "-v", "0", ASGI],
        cwd=PROJECT_ROOT,
        env=our_env(site.database_url, redis_url),
        stdout=(workdir / "daphne.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return process, port
        except OSError:
            time.sleep(0.1)
    raise BenchError("daphne did not start; see " + str(workdir / "daphne.log"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.history", description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--publishes", type=int, default=200, help="per round and channel")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--missed", type=int, default=20)
    parser.add_argument("--outage", type=float, default=5.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=["cost", "storm"], help="run one of the two")
    args = parser.parse_args(argv)
    python = default_python()
    workdir = make_workdir()
    processes: list[subprocess.Popen[bytes]] = []
    result: dict[str, dict[str, Any]] = {}
    try:
        site = prepare(workdir, python)
        redis, redis_url = start_redis(workdir)
        processes.append(redis)
        daphne, port = start_daphne(workdir, python, site, redis_url)
        processes.append(daphne)
        key = site.api_key
        if args.only != "storm":
            figures = cost(port, daphne.pid, key, args.subscribers, args.publishes, args.rounds)
            result["cost"] = asyncio.run(figures)
        if args.only != "cost":
            result["storm"] = asyncio.run(storm(port, key, args.subscribers, args.missed, args.outage))
    except BenchError as error:
        print(f"bench.history: {error}; measured so far: {json.dumps(result)}", file=sys.stderr)
        return 2
    finally:
        for process in reversed(processes):
            process.terminate()
            process.wait(timeout=10)
        remove_workdir(workdir)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for name, figures in result.items():
            print(f"{name}: {'PASS' if figures['pass'] else 'FAIL'}")
            for label, value in figures.items():
                print(f"  {label}: {value}")
    return 0 if all(figures["pass"] for figures in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
