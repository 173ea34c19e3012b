"""The load: subscribers that count every delivery, a steady publisher, and connection churn.

Every event carries its channel, its sequence number on that channel and its send time
(``time.perf_counter()``: publisher and subscribers share this process and its clock), so each
subscription can tell a lost, duplicated or misrouted event, and each delivery its latency.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import random
import time
import uuid
from array import array
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .server import WS_PATH, Server

SUBPROTOCOL = "aws-appsync-event-ws"
clock = time.perf_counter
OPEN_CONCURRENCY = 100
OPEN_ATTEMPTS = 8
REPLY_TIMEOUT = 30.0
# A subscription that closes is owed only the events acknowledged this long before it closed.
CLOSE_MARGIN = 1.0


@dataclass(slots=True)
class Subscription:
    channel: int
    counts: bytearray  # deliveries per per-channel sequence number
    first: int = 0  # per-channel sequence numbers from here on must arrive ...
    closed_at: float = 0.0  # ... if acknowledged before this moment (0: still open)


@dataclass
class Stats:
    deliveries: int = 0
    window_latencies: array = field(default_factory=lambda: array("d"))
    all_latencies: array = field(default_factory=lambda: array("d"))
    foreign: int = 0  # deliveries of another channel's event: a routing bug
    server_closes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, args: argparse.Namespace, server: Server) -> None:
        self.args = args
        self.server = server
        self.run = uuid.uuid4().hex[:8]
        self.url = f"ws://{server.host}:{server.port}{WS_PATH}"
        header = {"host": f"{server.host}:{server.port}", "x-api-key": server.api_key}
        encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).decode().rstrip("=")
        self.subprotocols = [SUBPROTOCOL, "header-" + encoded]
        self.channels = [f"/default/soak/{self.run}/c{i}" for i in range(args.channels)]
        per_channel = int(args.rate * args.minutes * 60 / args.channels) + 2
        self.per_channel = per_channel
        # Per channel: when each event's publish_success arrived (0: not yet).
        self.acked = [array("d", bytes(8 * per_channel)) for _ in self.channels]
        self.next_seq = [0] * args.channels
        self.published = 0
        self.publish_failures: list[str] = []
        self.pending: dict[str, tuple[int, int]] = {}
        self.acks_drained = asyncio.Event()
        self.subscriptions: list[Subscription] = []
        self.conns: dict[int, tuple[ClientConnection, list[Subscription], asyncio.Task[None]]] = {}
        self.closing: set[int] = set()
        self.opened = 0
        self.stats = Stats()
        self.padding = "x" * max(0, args.event_bytes - 40)

    # -- one subscriber --------------------------------------------------------------------------

    def _deliver(self, subs: dict[str, Subscription], message: dict[str, Any], now: float) -> None:
        sub = subs.get(message.get("id", ""))
        if sub is None:
            self.stats.errors.append(f"data for an unknown subscription: {str(message)[:200]}")
            return
        event = json.loads(message["event"])
        if event["c"] != sub.channel:
            self.stats.foreign += 1
            return
        seq = event["k"]
        if sub.counts[seq] < 255:
            sub.counts[seq] += 1
        self.stats.deliveries += 1
        self.stats.window_latencies.append(now - event["t"])

    async def _reply(
        self, ws: ClientConnection, subs: dict[str, Subscription], wanted: str
    ) -> dict[str, Any]:
        """The next control frame (data frames that arrive meanwhile are counted)."""
        async with asyncio.timeout(REPLY_TIMEOUT):
            while True:
                message = json.loads(await ws.recv())
                kind = message.get("type")
                if kind == "data":
                    self._deliver(subs, message, clock())
                elif kind != "ka":
                    if kind != wanted:
                        raise RuntimeError(f"expected {wanted}, got {str(message)[:300]}")
                    return message

    async def open_subscriber(self, number: int) -> None:
        chosen = [(number + j) % self.args.channels for j in range(self.args.subscriptions)]
        for attempt in range(OPEN_ATTEMPTS):
            ws = await connect(
                self.url,
                subprotocols=self.subprotocols,  # type: ignore[arg-type]
                open_timeout=REPLY_TIMEOUT,
                ping_interval=None,
                compression=None,
                max_queue=None,
                proxy=None,
            )
            subs: dict[str, Subscription] = {}
            await ws.send('{"type":"connection_init"}')
            try:
                await self._reply(ws, subs, "connection_ack")
                break
            except RuntimeError as error:
                await ws.close()
                if "LimitExceededError" not in str(error) or attempt + 1 == OPEN_ATTEMPTS:
                    raise
                await asyncio.sleep(random.uniform(0, min(5.0, 0.1 * 2**attempt)))
        for j, channel in enumerate(chosen):
            sub_id = f"s{j}"
            sub = Subscription(channel, bytearray(self.per_channel))
            subs[sub_id] = sub
            await ws.send(json.dumps({"type": "subscribe", "id": sub_id, "channel": self.channels[channel]}))
            await self._reply(ws, subs, "subscribe_success")
            # Every event sent from now on must reach this subscription.
            sub.first = self.next_seq[channel]
            self.subscriptions.append(sub)
        reader = asyncio.get_running_loop().create_task(self._read(number, ws, subs))
        self.conns[number] = (ws, list(subs.values()), reader)
        self.opened += 1

    async def _read(self, number: int, ws: ClientConnection, subs: dict[str, Subscription]) -> None:
        deliver = self._deliver
        try:
            async for raw in ws:
                now = clock()
                message = json.loads(raw)
                kind = message.get("type")
                if kind == "data":
                    deliver(subs, message, now)
                elif kind != "ka":
                    self.stats.errors.append(f"unexpected frame {str(message)[:300]}")
        except ConnectionClosed:
            pass
        if number not in self.closing:
            self.stats.server_closes.append(f"connection {number}: {ws.close_code} {ws.close_reason!r}")

    async def close_subscriber(self, number: int) -> None:
        """Close one connection; its reader counts what arrives until the server's close."""
        self.closing.add(number)
        ws, subs, reader = self.conns.pop(number)
        now = clock()
        for sub in subs:
            sub.closed_at = now
        await ws.close()
        try:
            async with asyncio.timeout(REPLY_TIMEOUT):
                await reader
        except TimeoutError:
            reader.cancel()

    # -- the publisher -----------------------------------------------------------------------------

    async def publish_for(self, seconds: float) -> None:
        ws = await connect(
            self.url,
            subprotocols=self.subprotocols,  # type: ignore[arg-type]
            open_timeout=REPLY_TIMEOUT,
            ping_interval=None,
            compression=None,
            max_queue=None,
            proxy=None,
        )
        await ws.send('{"type":"connection_init"}')
        await self._reply(ws, {}, "connection_ack")
        reader = asyncio.get_running_loop().create_task(self._read_acks(ws))
        total = int(self.args.rate * seconds)
        start = clock()
        try:
            for n in range(total):
                delay = start + n / self.args.rate - clock()
                if delay > 0:
                    await asyncio.sleep(delay)
                channel = n % self.args.channels
                seq = self.next_seq[channel]
                if seq >= self.per_channel:
                    break
                self.next_seq[channel] = seq + 1
                op_id = f"p{n}"
                sent = clock()
                event = json.dumps({"c": channel, "k": seq, "t": sent, "pad": self.padding})
                self.pending[op_id] = (channel, seq)
                await ws.send(
                    json.dumps(
                        {"type": "publish", "id": op_id, "channel": self.channels[channel], "events": [event]}
                    )
                )
                self.published += 1
            if self.pending:
                self.acks_drained.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(REPLY_TIMEOUT):
                        await self.acks_drained.wait()
        finally:
            reader.cancel()
            await ws.close()
        for op_id in self.pending:
            self.publish_failures.append(f"{op_id}: no publish_success within {REPLY_TIMEOUT:.0f} s")

    async def _read_acks(self, ws: ClientConnection) -> None:
        async for raw in ws:
            now = clock()
            message = json.loads(raw)
            kind = message.get("type")
            if kind == "ka":
                continue
            where = self.pending.pop(message.get("id", ""), None)
            if not self.pending:
                self.acks_drained.set()
            if where is None:
                self.publish_failures.append(f"unexpected frame {str(message)[:300]}")
            elif kind == "publish_success" and len(message["successful"]) == 1 and not message["failed"]:
                self.acked[where[0]][where[1]] = now
            else:
                self.publish_failures.append(str(message)[:300])

    # -- verification ----------------------------------------------------------------------------

    def check_deliveries(self) -> tuple[int, int, int]:
        """(expected deliveries, missing, duplicated)."""
        expected = missing = duplicated = 0
        for sub in self.subscriptions:
            acked = self.acked[sub.channel]
            counts = sub.counts
            end = self.next_seq[sub.channel]
            duplicated += sum(1 for count in counts[:end] if count > 1)
            # A closing subscription owes only what was acknowledged well before it closed: the
            # data frame and the acknowledgement travel on different sockets.
            until = sub.closed_at - CLOSE_MARGIN if sub.closed_at else float("inf")
            for seq in range(sub.first, end):
                at = acked[seq]
                if at and at < until:
                    expected += 1
                    if counts[seq] == 0:
                        missing += 1
        return expected, missing, duplicated


async def churn_for(soak: Soak, seconds: float, rate: float, first_number: int) -> int:
    """Close and replace ``rate`` connections per second; returns how many were replaced."""
    if rate <= 0:
        return 0
    replaced = 0
    number = first_number
    start = clock()
    while clock() - start < seconds - 1.0 / rate:
        await asyncio.sleep(1.0 / rate)
        if not soak.conns:
            continue
        victim = random.choice(list(soak.conns))
        await soak.close_subscriber(victim)
        try:
            await soak.open_subscriber(number)
            replaced += 1
        except Exception as error:  # reported, and fails the run
            soak.stats.errors.append(f"reconnect {number}: {error!r}")
        number += 1
    return replaced
