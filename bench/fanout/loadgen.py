"""The load-generating process: ``python -m bench.fanout.loadgen``.

It reads one job (a JSON object) from its first stdin line, runs it against
already-running servers, and writes JSON lines to stdout: ``{"hold": ...}``
when it holds connections open for the orchestrator to measure (it then waits
for a line on stdin), and finally ``{"result": ...}`` or ``{"error": ...}``.
Nothing here imports Django: the load generator measures servers from the
outside, over loopback, like any client would.

Scenarios (``job["scenario"]``):

``burst``
    ``subscribers`` connections (spread round-robin over ``targets``) each
    ``connection_init`` and subscribe to one channel; a separate publisher
    connection on ``targets[publisher]`` pipelines ``events`` publishes of one
    event each. Timed from the first publish to the moment the last subscriber
    holds all events. Every subscriber counts each sequence number, so loss and
    duplication are checked per subscriber.
``steady``
    Same set-up; the publisher publishes ``rate`` events per second for
    ``duration`` seconds, each carrying its send time (``time.perf_counter()``; the
    publisher and the subscribers share this process and its clock).
    Subscribers record receive time − send time.
``connect``
    Open ``connections`` connections, each ``connection_init`` → ``connection_ack``,
    at most ``concurrency`` handshakes in flight. Optionally ``hold``: report,
    wait for the orchestrator (it reads the server's RSS), then close.
``warmup``
    A few connections subscribe, receive a few events and close, so the
    server has imported and cached its hot paths before anything is measured.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import resource
import sys
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import wsclient
from .infra import redis_counters, redis_delta
from .servers import busy_share, cpu_seconds_of, cpu_times

clock = time.perf_counter

SEQ_TOKEN = b'\\"s\\":'  # the escaped "s": of the event inside a data frame
TIME_TOKEN = b'\\"t\\":'
DATA_MARK = b'"data"'
REFUSED = "LimitExceeded"  # a connection_error the server asks to retry with backoff
# Retries of a refused connect, in every scenario unless its job says otherwise: a server's
# front door sheds connects while its loop lags (a busy machine), and clients retry with
# backoff, so a refusal slows a scenario's set-up (and its connects/s) instead of voiding it.
RETRY_REFUSED = 8
# Publishes one connection sends at once: half the server's PUBLISH_RATE_PER_CONNECTION burst
# (100), so the limiter's edge never refuses one.
PUBLISH_BURST = 50


@dataclass(frozen=True, slots=True)
class Target:
    host: str
    port: int
    path: str
    subprotocols: tuple[str, ...]

    @classmethod
    def from_job(cls, raw: dict[str, Any]) -> Target:
        return cls(raw["host"], int(raw["port"]), raw["path"], tuple(raw.get("subprotocols", ())))

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}{self.path}"


class FrameError(Exception):
    pass


# ---------------------------------------------------------------------------
# One connection, two client implementations


class Conn:
    """A protocol-level connection: request/response for control frames,
    a fast callback for ``data`` frames."""

    __slots__ = ("client", "waiter", "token", "on_data", "counts", "received", "errors", "reader")

    def __init__(self) -> None:
        self.client: Any = None
        self.waiter: asyncio.Future[bytes] | None = None
        self.token = b""
        self.on_data: Callable[[Conn, bytes, float], None] | None = None
        self.counts: bytearray | None = None
        self.received = 0
        self.errors: list[str] = []
        self.reader: asyncio.Task[None] | None = None

    def on_text(self, payload: bytes, now: float) -> None:
        if DATA_MARK in payload[:24]:
            on_data = self.on_data
            if on_data is not None:
                on_data(self, payload, now)
            return
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            if self.token in payload:
                waiter.set_result(payload)
                return
            if b"error" in payload[:40]:
                waiter.set_exception(FrameError(payload[:300].decode("utf-8", "replace")))
                return
        if b"error" in payload[:40]:
            self.errors.append(payload[:300].decode("utf-8", "replace"))

    async def request(self, frame: str, token: bytes, wait_s: float) -> bytes:
        self.waiter = asyncio.get_running_loop().create_future()
        self.token = token
        await self.send(frame)
        try:
            return await asyncio.wait_for(self.waiter, wait_s)
        finally:
            self.waiter = None

    async def send(self, frame: str) -> None:
        client = self.client
        if isinstance(client, wsclient.WSClient):
            client.send_text(frame)
        else:
            await client.send(frame)

    def close(self) -> None:
        client = self.client
        if client is None:
            return
        if isinstance(client, wsclient.WSClient):
            client.close()
        else:
            if self.reader is not None:
                self.reader.cancel()
            client.transport.close()


async def open_conn(target: Target, impl: str, wait_s: float) -> Conn:
    conn = Conn()
    if impl == "raw":
        conn.client = await wsclient.connect(
            target.host, target.port, target.path, target.subprotocols, conn.on_text, wait_s
        )
    else:
        from websockets.asyncio.client import connect

        ws = await connect(
            target.url,
            subprotocols=list(target.subprotocols),  # type: ignore[arg-type]
            compression=None,
            max_size=None,
            max_queue=None,
            ping_interval=None,
            open_timeout=wait_s,
        )
        conn.client = ws
        conn.reader = asyncio.get_running_loop().create_task(_lib_reader(ws, conn))
    return conn


async def _lib_reader(ws: Any, conn: Conn) -> None:
    on_text = conn.on_text
    try:
        while True:
            data = await ws.recv(decode=False)
            on_text(data, time.perf_counter())
    except Exception:
        return


# ---------------------------------------------------------------------------
# Opening many connections


@dataclass(slots=True)
class Opened:
    conns: list[Conn]
    errors: list[str]
    elapsed: float
    latencies: array
    refusals: int = 0  # connects refused (429) and retried


async def open_many(
    targets: list[Target],
    count: int,
    *,
    impl: str,
    concurrency: int,
    channel: str | None,
    wait_s: float,
    deadline: float,
    sub_id: str = "s1",
    private: bool = False,
    retry_refused: int = 0,
) -> Opened:
    """Open ``count`` connections (round-robin over targets): init → ack, then
    subscribe to ``channel`` (if given) → subscribe_success."""
    semaphore = asyncio.Semaphore(concurrency)
    conns: list[Conn | None] = [None] * count
    errors: list[str] = []
    latencies = array("d")
    init = json.dumps({"type": "connection_init"})

    def subscribe_frame(i: int) -> str:
        if not channel:
            return ""
        # Private channels: subscriber i alone on <channel>/<i> (a score to each player).
        name = f"{channel}/{i}" if private else channel
        return json.dumps({"type": "subscribe", "id": sub_id, "channel": name})

    refusals = 0

    async def one(i: int) -> None:
        nonlocal refusals
        for attempt in range(retry_refused + 1):
            async with semaphore:
                if clock() > deadline:
                    errors.append("deadline passed before connecting")
                    return
                started = clock()
                conn: Conn | None = None
                try:
                    conn = await open_conn(targets[i % len(targets)], impl, wait_s)
                    await conn.request(init, b"connection_ack", wait_s)
                    subscribe = subscribe_frame(i)
                    if subscribe:
                        await conn.request(subscribe, b"subscribe_success", wait_s)
                except Exception as exc:
                    if conn is not None:
                        conn.close()
                    if attempt < retry_refused and REFUSED in str(exc):
                        refusals += 1
                    else:
                        errors.append(f"{type(exc).__name__}: {exc}"[:300])
                        return
                else:
                    latencies.append(clock() - started)
                    conns[i] = conn
                    return
            # Refused by the server's connect admission: back off (full jitter) as clients do.
            await asyncio.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))

    started = clock()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = clock() - started
    return Opened([c for c in conns if c is not None], errors, elapsed, latencies, refusals)


def close_all(conns: list[Conn]) -> None:
    for conn in conns:
        try:
            conn.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# Figures


def percentile(sorted_values: list[float] | array, fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


def latency_summary(values: array) -> dict[str, float | None]:
    ordered = sorted(values)
    ms = 1000.0
    return {
        "p50_ms": None if not ordered else percentile(ordered, 0.50) * ms,  # type: ignore[operator]
        "p90_ms": None if not ordered else percentile(ordered, 0.90) * ms,  # type: ignore[operator]
        "p99_ms": None if not ordered else percentile(ordered, 0.99) * ms,  # type: ignore[operator]
        "max_ms": None if not ordered else ordered[-1] * ms,
    }


def _seq(payload: bytes) -> int:
    """The sequence number of the event inside a data frame, without JSON parsing."""
    i = payload.rfind(SEQ_TOKEN)
    if i >= 0:
        j = payload.find(b"}", i)
        try:
            return int(payload[i + 6 : j])
        except ValueError:
            pass
    return int(json.loads(json.loads(payload)["event"])["s"])


def _sent_at(payload: bytes) -> float:
    i = payload.rfind(TIME_TOKEN)
    if i >= 0:
        j = payload.find(b",", i)
        try:
            return float(payload[i + 6 : j])
        except ValueError:
            pass
    return float(json.loads(json.loads(payload)["event"])["t"])


class Tally:
    """Per-subscriber delivery accounting shared by ``burst`` and ``steady``."""

    def __init__(self, subscribers: int, events: int, keep_latency: bool) -> None:
        self.subscribers = subscribers
        self.events = events
        self.unique = 0
        self.duplicates = 0
        self.out_of_range = 0
        self.complete = 0
        self.done_at: float | None = None
        self.done = asyncio.Event()
        self.latencies = array("d") if keep_latency else None

    def attach(self, conn: Conn) -> None:
        conn.counts = bytearray(self.events)
        conn.received = 0
        conn.on_data = self.on_data_latency if self.latencies is not None else self.on_data

    def on_data(self, conn: Conn, payload: bytes, now: float) -> None:
        seq = _seq(payload)
        counts = conn.counts
        assert counts is not None
        if not 0 <= seq < self.events:
            self.out_of_range += 1
            return
        if counts[seq]:
            self.duplicates += 1
            return
        counts[seq] = 1
        self.unique += 1
        conn.received += 1
        if conn.received == self.events:
            self.complete += 1
            if self.complete == self.subscribers:
                self.done_at = now
                self.done.set()

    def on_data_latency(self, conn: Conn, payload: bytes, now: float) -> None:
        self.latencies.append(now - _sent_at(payload))  # type: ignore[union-attr]
        self.on_data(conn, payload, now)


def event_text(seq: int, sent_at: float | None = None) -> str:
    # The sequence number comes last, so a subscriber finds it with one rfind.
    if sent_at is None:
        return f'{{"m":"benchmark event","s":{seq}}}'
    return f'{{"m":"benchmark event","t":{sent_at:.6f},"s":{seq}}}'


def publish_frame(op_id: str, channel: str, event: str) -> str:
    return json.dumps({"type": "publish", "id": op_id, "channel": channel, "events": [event]})


class Publisher:
    """One publishing connection (the ``websockets`` library client), counting replies."""

    def __init__(self) -> None:
        self.ws: Any = None
        self.successes = 0
        self.errors: list[str] = []
        self.reader: asyncio.Task[None] | None = None
        self.acked = asyncio.Event()
        self.expected = 0

    async def open(self, target: Target, wait_s: float) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(
            target.url,
            subprotocols=list(target.subprotocols),  # type: ignore[arg-type]
            compression=None,
            max_size=None,
            max_queue=None,
            ping_interval=None,
            open_timeout=wait_s,
        )
        await self.ws.send(json.dumps({"type": "connection_init"}))
        while True:
            reply = await asyncio.wait_for(self.ws.recv(), wait_s)
            if "connection_ack" in reply:
                break
            if "error" in reply:
                raise FrameError(reply[:300])
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def open_retrying(self, target: Target, wait_s: float, retries: int) -> None:
        """:meth:`open`, backing off after a connect the server refused (429), as clients do."""
        for attempt in range(retries + 1):
            try:
                await self.open(target, wait_s)
                return
            except FrameError as error:
                if attempt >= retries or REFUSED not in str(error):
                    raise
                if self.ws is not None:
                    await self.ws.close()
                await asyncio.sleep(random.uniform(0, min(2.0, 0.1 * 2**attempt)))

    async def _read(self) -> None:
        try:
            async for reply in self.ws:
                if '"publish_success"' in reply:
                    self.successes += 1
                    if self.successes >= self.expected:
                        self.acked.set()
                elif "error" in reply[:40]:
                    self.errors.append(reply[:300])
        except Exception:
            return

    async def close(self) -> None:
        if self.reader is not None:
            self.reader.cancel()
        if self.ws is not None:
            try:
                await asyncio.wait_for(self.ws.close(), 2)
            except Exception:
                pass


# ---------------------------------------------------------------------------
# Scenarios


async def run_fanout(
    job: dict[str, Any], *, steady: bool, out: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    targets = [Target.from_job(t) for t in job["targets"]]
    subscribers = int(job["subscribers"])
    channel = job["channel"]
    op_timeout = float(job.get("op_timeout", 30))
    deadline = clock() + float(job["timeout"])
    if steady:
        rate = float(job["rate"])
        events = max(1, round(rate * float(job["duration"])))
    else:
        events = int(job["events"])
    tally = Tally(subscribers, events, keep_latency=steady)
    private = bool(job.get("private")) and not steady
    retry_refused = int(job.get("retry_refused", RETRY_REFUSED))

    opened = await open_many(
        targets,
        subscribers,
        impl=job.get("client", "raw"),
        concurrency=int(job.get("concurrency", 64)),
        channel=channel,
        wait_s=op_timeout,
        deadline=deadline,
        private=private,
        retry_refused=retry_refused,
    )
    result: dict[str, Any] = {
        "private": private,
        "subscribers": subscribers,
        "subscribed": len(opened.conns),
        "events": events,
        "setup_s": opened.elapsed,
        "setup_errors": opened.errors[:5],
        "setup_error_count": len(opened.errors),
        "setup_refusals_retried": opened.refusals,
    }
    if opened.errors:
        close_all(opened.conns)
        result["error"] = f"{len(opened.errors)} subscribers failed to subscribe"
        return result
    for conn in opened.conns:
        tally.attach(conn)

    publisher = Publisher()
    publisher.expected = events
    await publisher.open_retrying(targets[int(job.get("publisher", 0))], op_timeout, retry_refused)
    # Private channels: one publish per subscriber and event, shared out over enough
    # publishing connections that none exceeds its burst of PUBLISH_BURST.
    extra: list[Publisher] = []
    if private:
        publishers = max(1, math.ceil(subscribers * events / PUBLISH_BURST))
        extra = [Publisher() for _ in range(publishers - 1)]
        for n, p in enumerate(extra, start=1):
            await p.open_retrying(targets[n % len(targets)], op_timeout, retry_refused)
    every_publisher = [publisher, *extra]
    # Let the subscribe acks and keep-alives settle before the clock starts.
    await asyncio.sleep(0.1)
    if job.get("hold_before_publish") and out is not None:
        # The orchestrator attaches a profiler now, so it samples only the fan-out.
        out({"hold": {"open": len(opened.conns)}})
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    server_pids = [int(pid) for pid in job.get("server_pids", ())]
    # A proxy in front (nginx) is measured apart: its cost is the proxy's, not the server's.
    proxy_pids = [int(pid) for pid in job.get("proxy_pids", ())]
    redis_url = job.get("redis_counters_url")
    redis_before = redis_counters(redis_url) if redis_url else None
    proxy_cpu_started = cpu_seconds_of(proxy_pids)
    started_unix = time.time()
    started = clock()
    cpu_started = time.process_time()
    server_cpu_started = cpu_seconds_of(server_pids)
    cores_started = cpu_times()
    if private:
        shares: list[list[str]] = [[] for _ in every_publisher]
        for i in range(events):
            for n in range(subscribers):
                k = i * subscribers + n
                shares[k % len(shares)].append(publish_frame(f"p{k}", f"{channel}/{n}", event_text(i)))
        for p, share in zip(every_publisher, shares, strict=True):
            p.expected = len(share)
        await asyncio.gather(*(_send_all(p, share) for p, share in zip(every_publisher, shares, strict=True)))
        drain_until = deadline
    elif not steady:
        # Pipelined: every publish frame leaves at once, the server sees a burst.
        frames = [publish_frame(f"p{i}", channel, event_text(i)) for i in range(events)]
        for frame in frames:
            await publisher.ws.send(frame)
        drain_until = deadline
    else:
        interval = 1.0 / rate
        for i in range(events):
            delay = started + i * interval - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            await publisher.ws.send(publish_frame(f"p{i}", channel, event_text(i, clock())))
        drain_until = min(deadline, clock() + float(job.get("drain", 5)))
    publish_done = clock()

    remaining = drain_until - clock()
    try:
        await asyncio.wait_for(tally.done.wait(), max(remaining, 0.01))
    except TimeoutError:
        pass
    ended = tally.done_at if tally.done_at is not None else clock()
    cpu_used = time.process_time() - cpu_started
    server_cpu_used = cpu_seconds_of(server_pids) - server_cpu_started
    proxy_cpu_used = cpu_seconds_of(proxy_pids) - proxy_cpu_started
    window = clock() - started
    core_busy = busy_share(cores_started, cpu_times())
    server_cores = [int(c) for c in job.get("server_cores") or ()]
    # Brief grace for duplicates that would arrive after the last expected frame.
    await asyncio.sleep(float(job.get("grace", 0.3)))

    expected = subscribers * events
    elapsed = ended - started
    result.update(
        {
            "expected": expected,
            "delivered": tally.unique,
            "lost": expected - tally.unique,
            "duplicates": tally.duplicates,
            "out_of_range": tally.out_of_range,
            "complete": tally.done_at is not None,
            "elapsed_s": elapsed,
            "publish_s": publish_done - started,
            "started_unix": started_unix,
            "deliveries_per_s": tally.unique / elapsed if elapsed > 0 else None,
            "publish_acks": sum(p.successes for p in every_publisher),
            "publishes": sum(p.expected for p in every_publisher) if private else events,
            # Share of one core the load generator used while it measured: near
            # 1.0 means the client, not the server, may be the bottleneck.
            "loadgen_cpu": cpu_used / window if window > 0 else None,
            # CPU-seconds the server process(es) used in the same window, per second.
            "server_cpu": server_cpu_used / window if window > 0 and server_pids else None,
            "deliveries_per_server_cpu_s": tally.unique / server_cpu_used if server_cpu_used > 0 else None,
            "server_cpu_s": server_cpu_used,
            # Busy share of each CPU in the window, whoever used it: on the server
            # core, busy minus server_cpu is other programs competing with the server.
            "cpu_busy": {str(k): round(v, 3) for k, v in sorted(core_busy.items())},
            "others_on_server_cores": (
                max(0.0, sum(core_busy.get(c, 0.0) for c in server_cores) - server_cpu_used / window)
                if server_cores and window > 0
                else None
            ),
            "publish_errors": [e for p in every_publisher for e in p.errors][:5],
            "subscriber_errors": [e for c in opened.conns for e in c.errors][:5],
        }
    )
    if proxy_pids:
        result["proxy_cpu_s"] = proxy_cpu_used
        result["proxy_cpu"] = proxy_cpu_used / window if window > 0 else None
        result["deliveries_per_proxy_cpu_s"] = tally.unique / proxy_cpu_used if proxy_cpu_used > 0 else None
    if redis_url and redis_before is not None:
        # Every command the servers sent Redis for this fan-out (the grace period included,
        # so late replies are counted): per publish, it is O(processes), not O(subscribers).
        delta = redis_delta(redis_before, redis_counters(redis_url))
        delta["calls_per_publish"] = delta["total_calls"] / result["publishes"]
        result["redis"] = delta
    if steady:
        assert tally.latencies is not None
        result.update(latency_summary(tally.latencies))
        result["rate"] = rate
        result["duration_s"] = events / rate
    for p in every_publisher:
        await p.close()
    close_all(opened.conns)
    await asyncio.sleep(0.2)
    return result


async def _send_all(publisher: Publisher, frames: list[str]) -> None:
    for frame in frames:
        await publisher.ws.send(frame)


async def run_connect(job: dict[str, Any], out: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    targets = [Target.from_job(t) for t in job["targets"]]
    count = int(job["connections"])
    deadline = clock() + float(job["timeout"])
    server_pids = [int(pid) for pid in job.get("server_pids", ())]
    cpu_started = time.process_time()
    server_cpu_started = cpu_seconds_of(server_pids)
    opened = await open_many(
        targets,
        count,
        impl=job.get("client", "raw"),
        concurrency=int(job.get("concurrency", 64)),
        channel=job.get("channel"),
        wait_s=float(job.get("op_timeout", 30)),
        deadline=deadline,
        retry_refused=int(job.get("retry_refused", RETRY_REFUSED)),
    )
    result: dict[str, Any] = {
        "connections": count,
        "opened": len(opened.conns),
        "errors": len(opened.errors),
        "refusals_retried": opened.refusals,
        "error_samples": opened.errors[:5],
        "elapsed_s": opened.elapsed,
        "connects_per_s": len(opened.conns) / opened.elapsed if opened.elapsed > 0 else None,
        "loadgen_cpu": (time.process_time() - cpu_started) / opened.elapsed if opened.elapsed > 0 else None,
        "server_cpu": (cpu_seconds_of(server_pids) - server_cpu_started) / opened.elapsed
        if opened.elapsed > 0 and server_pids
        else None,
        "concurrency": int(job.get("concurrency", 64)),
    }
    if opened.errors:
        result["error"] = f"{len(opened.errors)} of {count} connections failed, e.g. {opened.errors[0]}"
    lat = latency_summary(opened.latencies)
    result.update({f"handshake_{k}": v for k, v in lat.items()})
    tally = None
    if job.get("channel"):
        # Subscribed connections count what another process publishes while they are held.
        tally = Tally(len(opened.conns), int(job.get("events", 0)), keep_latency=False)
        for conn in opened.conns:
            tally.attach(conn)
    if job.get("hold"):
        # Idle for a moment (acks and the post-ack keep-alive are flushed),
        # then let the orchestrator read the server's memory.
        await asyncio.sleep(float(job.get("settle", 1.0)))
        out({"hold": {"open": len(opened.conns)}})
        await loop.run_in_executor(None, sys.stdin.readline)
    if tally is not None:
        if tally.events and tally.subscribers:
            try:
                await asyncio.wait_for(tally.done.wait(), float(job.get("drain", 5.0)))
            except TimeoutError:
                pass
        await asyncio.sleep(float(job.get("grace", 0.3)))
        expected = tally.subscribers * tally.events
        result.update(
            {
                "expected": expected,
                "delivered": tally.unique,
                "lost": expected - tally.unique,
                "duplicates": tally.duplicates,
                "out_of_range": tally.out_of_range,
            }
        )
    close_all(opened.conns)
    await asyncio.sleep(0.5)
    return result


async def run_publish(job: dict[str, Any]) -> dict[str, Any]:
    """Publish ``events`` events to ``channel`` (sequence numbers from ``first``), at once or one
    every ``interval`` seconds, and wait for every ``publish_success`` (the subscribers are held
    by other load-generator processes)."""
    target = Target.from_job(job["targets"][0])
    events = int(job["events"])
    first = int(job.get("first", 0))
    interval = float(job.get("interval", 0.0))
    publisher = Publisher()
    publisher.expected = events
    await publisher.open_retrying(
        target, float(job.get("op_timeout", 30)), int(job.get("retry_refused", RETRY_REFUSED))
    )
    started = clock()
    for i in range(events):
        if interval > 0:
            delay = started + i * interval - clock()
            if delay > 0:
                await asyncio.sleep(delay)
        await publisher.ws.send(publish_frame(f"p{first + i}", job["channel"], event_text(first + i)))
    try:
        await asyncio.wait_for(publisher.acked.wait(), float(job["timeout"]))
    except TimeoutError:
        pass
    acked_s = clock() - started
    await publisher.close()
    return {
        "events": events,
        "publish_acks": publisher.successes,
        "acked_s": acked_s,
        "publish_errors": publisher.errors[:5],
    }


async def run_warmup(job: dict[str, Any]) -> dict[str, Any]:
    warm = dict(job)
    warm.update({"subscribers": int(job.get("subscribers", 20)), "events": int(job.get("events", 20))})
    return await run_fanout(warm, steady=False)


async def run(job: dict[str, Any], out: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    scenario = job["scenario"]
    if scenario == "burst":
        return await run_fanout(job, steady=False, out=out)
    if scenario == "steady":
        return await run_fanout(job, steady=True, out=out)
    if scenario == "connect":
        return await run_connect(job, out)
    if scenario == "warmup":
        return await run_warmup(job)
    if scenario == "publish":
        return await run_publish(job)
    raise ValueError(f"unknown scenario {scenario!r}")


def raise_nofile() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def main() -> None:
    def out(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    job = json.loads(sys.stdin.readline())
    raise_nofile()
    try:
        import uvloop

        runner: Any = uvloop.run if job.get("uvloop", True) else asyncio.run
    except ImportError:
        runner = asyncio.run
    started = time.monotonic()
    try:
        result = runner(run(job, out))
    except Exception as exc:
        out({"error": f"{type(exc).__name__}: {exc}", "wall_s": time.monotonic() - started})
        return
    out({"result": result, "wall_s": time.monotonic() - started})


if __name__ == "__main__":
    main()
