"""``python -m bench.presence``: how many occupancy updates a join burst makes a watcher see.

One daphne (``config.asgi:application``, the in-memory layer, a fresh SQLite database) or two
sharing Redis (``--redis-url``). A watcher subscribes to ``/$presence/default/<run>``; N sockets
are opened and acknowledged first (and one more subscribes elsewhere, to warm the caches of
namespaces and keys), then all N subscribe to ``/default/<run>`` as fast as the
client can send (the "join window" is from the first subscribe sent to the last
``subscribe_success``). The watcher's ``data`` frames are counted from the first subscribe until
``--settle`` seconds after the last acknowledgement: the goal is at most 3 updates for 1,000 joins
within 1 s, and the last update must say N.

``--scenario revoke --redis-url URL``: revoking a key with live sockets on two processes
(``bench/presence/revoke.py``).

Exit status: 0 when measured (the goal's verdict is printed, not asserted), 2 when a measurement
failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.fanout.servers import KINDS, BenchError, OurSite, Server, ServerPool
from bench.fanout.wsclient import WSClient, connect
from bench.presence import revoke

GOAL_UPDATES = 3


class Socket:
    """One benchmark socket: acknowledged, then subscribed; keeps its data frames."""

    def __init__(self) -> None:
        self.client: WSClient | None = None
        self.acked = asyncio.get_running_loop().create_future()
        self.subscribed = asyncio.get_running_loop().create_future()
        self.data: list[tuple[float, dict[str, Any]]] = []

    def on_text(self, payload: bytes, now: float) -> None:
        frame = json.loads(payload)
        kind = frame.get("type")
        if kind == "connection_ack" and not self.acked.done():
            self.acked.set_result(now)
        elif kind == "subscribe_success" and not self.subscribed.done():
            self.subscribed.set_result(now)
        elif kind == "data":
            self.data.append((now, json.loads(frame["event"])))
        elif kind in {"subscribe_error", "connection_error", "error"} and not self.subscribed.done():
            self.subscribed.set_exception(BenchError(f"refused: {frame}"))

    async def open(self, server: Server) -> None:
        target = server.target()
        self.client = await connect(
            target["host"], target["port"], target["path"], target["subprotocols"], self.on_text
        )
        self.client.send_text(b'{"type":"connection_init"}')
        await asyncio.wait_for(self.acked, 30)

    def subscribe(self, channel: str) -> None:
        assert self.client is not None
        self.client.send_text(json.dumps({"type": "subscribe", "id": "s1", "channel": channel}))


async def measure(servers: list[Server], joins: int, settle: float, concurrency: int) -> dict[str, Any]:
    run = uuid.uuid4().hex[:10]
    channel = f"/default/bench-{run}"
    watcher = Socket()
    await watcher.open(servers[0])
    watcher.subscribe(f"/$presence{channel}")
    await asyncio.wait_for(watcher.subscribed, 30)
    await asyncio.sleep(0.2)  # the snapshot that follows the ack

    members = [Socket() for _ in range(joins)]
    gate = asyncio.Semaphore(concurrency)

    async def open_one(index: int, member: Socket) -> None:
        async with gate:
            await member.open(servers[index % len(servers)])

    await asyncio.gather(*(open_one(i, m) for i, m in enumerate(members)))
    # Warm each server's namespace and API key caches (their TTL is 5 s, opening the sockets may
    # take longer): the joins then measure the subscribe path, not a thousand cache misses at once.
    for server in servers:
        warm = Socket()
        await warm.open(server)
        warm.subscribe(f"{channel}/warm")
        await asyncio.wait_for(warm.subscribed, 30)
        assert warm.client is not None
        warm.client.close()
    before = len(watcher.data)
    first_sent = time.perf_counter()
    for member in members:
        member.subscribe(channel)
    acked = await asyncio.wait_for(asyncio.gather(*(m.subscribed for m in members)), 60)
    join_window = max(acked) - first_sent
    await asyncio.sleep(settle)
    updates = watcher.data[before:]
    for member in [*members, watcher]:
        if member.client is not None:
            member.client.close()
    last = updates[-1][1] if updates else None
    return {
        "joins": joins,
        "processes": len(servers),
        "join_window_s": round(join_window, 3),
        "updates": len(updates),
        "update_times_s": [round(at - first_sent, 3) for at, _ in updates],
        "last_update": last,
        "last_is_complete": bool(last and last["subscriptions"] == joins and last["connections"] == joins),
        "goal": f"<= {GOAL_UPDATES} updates for {joins} joins within 1 s",
        "goal_met": join_window <= 1.0 and len(updates) <= GOAL_UPDATES,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.presence", description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", choices=["joins", "revoke"], default="joins")
    parser.add_argument("--joins", type=int, default=1000)
    parser.add_argument(
        "--revoked", type=int, default=1000, help="revoke: sockets opened with the revoked key"
    )
    parser.add_argument("--others", type=int, default=100, help="revoke: sockets opened with another key")
    parser.add_argument("--settle", type=float, default=3.0, help="seconds to watch after the last join")
    parser.add_argument(
        "--concurrency", type=int, default=64, help="sockets opened at once (before the joins)"
    )
    parser.add_argument("--redis-url", default="", help="two server processes sharing this Redis")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-presence-") as tmp:
        workdir = Path(tmp)
        pool = ServerPool(sys.executable, workdir, server_cores=None)
        try:
            site = OurSite.prepare(workdir, sys.executable)
            kind = KINDS["ours-daphne"]
            count = 2 if args.redis_url else 1
            servers = pool.start_many(kind, count, site=site, redis_url=args.redis_url)
            if args.scenario == "revoke":
                if not args.redis_url:
                    parser.error("--scenario revoke needs --redis-url (two processes)")
                result = asyncio.run(
                    revoke.measure(site, servers, args.redis_url, args.revoked, args.others, args.concurrency)
                )
            else:
                result = asyncio.run(measure(servers, args.joins, args.settle, args.concurrency))
        except (BenchError, TimeoutError) as error:
            print(f"measurement failed: {error!r}", file=sys.stderr)
            return 2
        finally:
            pool.stop_all()
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0
