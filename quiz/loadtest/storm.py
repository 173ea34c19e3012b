"""The overload benchmark: joins offered at several times what the server can take.

Everything is measured against the server itself, in the same run:

- :func:`healthz_unloaded`: ``GET /healthz`` one request at a time, the latency
  of a request that waits for nothing (the reference for a 429's latency);
- :func:`capacity`: closed loops of joins, the admitted joins/s with no
  overload (what "2×" and "10×" multiply);
- :func:`storm`: an open loop offering ``factor ×`` that capacity for a few
  seconds, each request on a fresh connection from one of many loopback
  addresses, no retries, a client timeout (as phones behave);
- :func:`crowd`: N players joining at once, each retrying with exponential
  backoff and full jitter, never before ``Retry-After``, with an
  ``Idempotency-Key`` (so a timed-out attempt is retried safely).

:func:`report_storms` and :func:`report_crowd` turn the results into figures
and PASS/FAIL lines against the goals of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any

from .http import Backoff, Connection, ConnectionFailed, Response, source_addresses, with_backoff
from .report import Report, ms, percentile, rate


@dataclass
class Offered:
    """Requests of one open-loop phase and what became of each."""

    name: str
    factor: float = 0.0
    target_rate: float = 0.0
    offered_rate: float = 0.0
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    # From the request's intended send time to its answer (coordinated-omission-correct).
    latencies: dict[int, list[float]] = field(default_factory=dict)
    # Where that time went, per request: the load generator starting it late
    # (its own schedule slipped), waiting for a connection (a free keep-alive
    # one, or the server accepting a new one), then the server's answer (written → read).
    late: list[float] = field(default_factory=list)
    connecting: list[float] = field(default_factory=list)
    answering: dict[int, list[float]] = field(default_factory=dict)
    # The generator's own event loop: how late a 10 ms timer ran, sampled all along.
    # A response the server sent at once still waits that long to be read.
    loop_lag: list[float] = field(default_factory=list)
    connections: int = 0  # opened by the load generator
    timeouts: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    retry_after_missing: int = 0
    # nickname -> player id of every 201
    admitted: dict[str, int] = field(default_factory=dict)
    # A capacity measurement's levels (the best of which this is).
    levels: list[Offered] = field(default_factory=list)

    def add(self, nickname: str, response: Response, seconds: float, timing: Timing | None = None) -> None:
        self.statuses[response.status] += 1
        self.latencies.setdefault(response.status, []).append(seconds)
        if timing is not None and timing.sent:
            self.late.append(timing.began - timing.intended)
            self.connecting.append(timing.sent - timing.began)
            self.answering.setdefault(response.status, []).append(timing.answered - timing.sent)
        if response.status == 201:
            self.admitted[nickname] = int(response.json()["player_id"])
        elif response.status == 429 and (response.retry_after() or 0) < 1:
            self.retry_after_missing += 1

    def p99(self, status: int) -> float | None:
        return percentile(self.latencies.get(status, []), 99)


@dataclass
class Timing:
    """One request's moments (``perf_counter``): when the schedule meant it to
    go, when the load generator started it, when it was written, when answered."""

    intended: float
    began: float = 0.0
    sent: float = 0.0
    answered: float = 0.0


class Target:
    """Where requests go: one or more servers, from ``addresses`` loopback addresses.

    With ``keepalive`` requests reuse keep-alive connections, one request at a
    time each (as a phone, or a proxy's upstream connection, reuses its
    connection): one per address, opened by :meth:`warm` before a storm, and a
    new one (from the next address) whenever every open one is busy, so no
    request waits behind another client's answer (as many phones would not).
    Without, every request opens its own.
    """

    def __init__(self, urls: list[str], addresses: int, *, keepalive: bool = False) -> None:
        self.servers = []
        for url in urls:
            host, _, port = url.removeprefix("http://").rstrip("/").partition(":")
            if not host.startswith("127."):
                raise ValueError(f"refusing to load a non-loopback host {host!r}")
            self.servers.append((host, int(port or 80)))
        self.addresses = source_addresses(addresses)
        self.keepalive = keepalive
        self._next = 0
        self._free: list[Connection] | None = None
        self.opened = 0

    def connection(self) -> Connection:
        """A new connection to the next server, from the next address."""
        self._next += 1
        host, port = self.servers[self._next % len(self.servers)]
        local_ip = self.addresses[self._next % len(self.addresses)]
        return Connection(host, port, local_ip=local_ip, authority=f"{host}:{port}")

    def _pool(self) -> list[Connection]:
        if self._free is None:
            self._free = [self.connection() for _ in self.addresses]
            self.opened += len(self._free)
        return self._free

    async def warm(self, at_once: int = 50) -> None:
        """Connect every pooled keep-alive connection now, ``at_once`` at a time: a storm's
        first requests must not each open one (a connection storm of the generator's making)."""
        if not self.keepalive:
            return
        pool = self._pool()
        for start in range(0, len(pool), at_once):
            await asyncio.gather(*(connection.open() for connection in pool[start : start + at_once]))

    async def request(
        self, path: str, headers: dict[str, str], body: bytes, on_sent: Callable[[], None] | None = None
    ) -> Response:
        """``POST path`` on a connection of the target (see the class); raises ConnectionFailed.

        ``on_sent`` is called once the request is written (after any connect)."""
        if not self.keepalive:
            connection = self.connection()
            self.opened += 1
            try:
                return await connection.request("POST", path, headers=headers, body=body, on_sent=on_sent)
            finally:
                await connection.close()
        pool = self._pool()
        if pool:
            connection = pool.pop()
        else:
            connection = self.connection()
            self.opened += 1
        healthy = False
        try:
            response = await connection.request("POST", path, headers=headers, body=body, on_sent=on_sent)
            healthy = True
            return response
        finally:
            if not healthy:  # cut mid-request (a timeout): never reuse it
                await connection.close()
            pool.append(connection)

    async def close(self) -> None:
        while self._free:
            await self._free.pop().close()


async def _join_once(
    target: Target,
    code: str,
    nickname: str,
    key: str | None,
    client_timeout: float,
    timing: Timing | None = None,
) -> Response:
    """One join through ``target``; raises ConnectionFailed (a timeout too). Fills ``timing``."""
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Idempotency-Key"] = f'"{key}"'
    body = f'{{"nickname": "{nickname}"}}'.encode()

    def sent() -> None:
        if timing is not None:
            timing.sent = perf_counter()

    try:
        async with asyncio.timeout(client_timeout):
            response = await target.request(f"/api/quiz/games/{code}/join", headers, body, sent)
    except TimeoutError:
        raise ConnectionFailed("timed out") from None
    if timing is not None:
        timing.answered = perf_counter()
    return response


async def healthz_unloaded(url: str, count: int = 200) -> list[float]:
    """Latencies of ``count`` sequential ``GET /healthz`` on one keep-alive connection."""
    target = Target([url], 1)
    connection = target.connection()
    latencies = []
    try:
        for _ in range(count):
            started = perf_counter()
            response = await connection.request("GET", "/healthz")
            if response.status == 200:
                latencies.append(perf_counter() - started)
    finally:
        await connection.close()
    return latencies


async def best_capacity(
    target: Target, code: str, run_id: str, seconds: float, concurrencies: Sequence[int]
) -> Offered:
    """The admitted joins/s with no overload: the best of closed loops at each of ``concurrencies``.

    Each level runs ``seconds`` of that many closed loops (each waits for its
    answer, and after a 429 its ``Retry-After``, before the next). A level
    meant to measure capacity must stay below what the front door lets in at
    once (``MAX_IN_FLIGHT``, and less once joins wait): beyond it the loops
    are refused and sleep, and the figure measures the limit, not the server.
    The level with the most 201s per second is the reference; every level is
    kept in :attr:`Offered.levels` for the report.
    """
    best: Offered | None = None
    levels = []
    for loops in concurrencies:
        result = await capacity(target, code, f"{run_id}-{loops}", seconds, loops)
        levels.append(result)
        if best is None or _admitted(result) > _admitted(best):
            best = result
        await asyncio.sleep(0.5)  # the level's last answers are out before the next begins
    assert best is not None, "no concurrency level given"
    best.levels = levels
    return best


def capacity_levels_error(levels: Sequence[float]) -> str | None:
    """Why closed-loop ``levels`` (per process) cannot measure capacity, or ``None`` if they can.

    More loops than the front door lets in at once (``MAX_IN_FLIGHT``) would measure its
    refusals and the loops' ``Retry-After`` sleeps, not the joins. Read where Django is set up.
    """
    from realtime.conf import realtime_settings

    most = int(realtime_settings.front_door_option("MAX_IN_FLIGHT"))
    if not levels or min(levels) < 1 or max(levels) >= most:
        return f"between 1 and MAX_IN_FLIGHT - 1 ({most - 1})"
    return None


def _admitted(result: Offered) -> float:
    return rate(result.statuses[201], result.seconds)


async def capacity(target: Target, code: str, run_id: str, seconds: float, loops: int) -> Offered:
    """``loops`` closed loops of joins for ``seconds``: each waits for its answer, and after a
    429 its ``Retry-After``, before the next."""
    result = Offered(f"{loops} loops", factor=loops)
    stop = perf_counter() + seconds
    numbers = iter(range(10**9))

    async def loop() -> None:
        while perf_counter() < stop:
            nickname = f"cap{run_id}-{next(numbers)}"
            started = perf_counter()
            try:
                response = await _join_once(target, code, nickname, None, 5.0)
            except ConnectionFailed as error:
                result.errors[str(error)] += 1
                continue
            result.add(nickname, response, perf_counter() - started)
            if response.status == 429:
                # A polite client: what the server admits, not how fast it refuses.
                await asyncio.sleep(response.retry_after() or 1.0)

    started = perf_counter()
    await asyncio.gather(*(loop() for _ in range(loops)))
    result.seconds = perf_counter() - started
    return result


async def storm(
    target: Target,
    code: str,
    run_id: str,
    *,
    factor: float,
    capacity_rate: float,
    seconds: float,
    client_timeout: float,
    begin: float | None = None,
    part: int = 0,
    parts: int = 1,
) -> Offered:
    """Offer ``factor × capacity_rate`` joins/s for ``seconds`` (open loop, no retries).

    With ``parts`` > 1 this sends only the requests ``n`` with ``n % parts == part``
    of the schedule that starts at ``begin`` (``perf_counter``, the same clock in
    every process of the machine): one of several processes sharing the storm
    (:func:`storm_in_processes`).
    """
    result = Offered(f"{factor:g}×", factor=factor, target_rate=factor * capacity_rate)
    total = max(1, int(result.target_rate * seconds))
    tasks: list[asyncio.Task[None]] = []

    async def one(n: int, intended: float) -> None:
        nickname = f"st{run_id}-{factor:g}-{n}"
        timing = Timing(intended, began=perf_counter())
        try:
            response = await _join_once(target, code, nickname, None, client_timeout, timing)
        except ConnectionFailed as error:
            if str(error) == "timed out":
                result.timeouts += 1
            else:
                result.errors[str(error)] += 1
            return
        # From when the request was meant to go: a generator running late adds to it.
        result.add(nickname, response, timing.answered - intended, timing)

    await target.warm()
    sampler = asyncio.create_task(_sample_lag(result.loop_lag))
    opened = target.opened
    if begin is None:
        begin = perf_counter() + 0.05
    for n in range(part, total, parts):
        intended = begin + n / result.target_rate
        delay = intended - perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(n, intended)))
    offered_for = perf_counter() - begin
    result.offered_rate = rate(len(tasks), offered_for)
    await asyncio.gather(*tasks)
    sampler.cancel()
    result.connections = target.opened - opened
    result.seconds = offered_for
    return result


async def storm_in_processes(
    target: Target,
    processes: int,
    code: str,
    run_id: str,
    *,
    factor: float,
    capacity_rate: float,
    seconds: float,
    client_timeout: float,
) -> Offered:
    """:func:`storm`, its schedule dealt over ``processes`` load-generator processes.

    One asyncio process offering thousands of requests a second falls behind
    its own schedule on a busy machine (its loop runs late, and every request
    it starts late and every answer it reads late is counted against the
    server). Each process here sends every ``processes``-th request of one
    schedule, from its own share of the target's addresses, on fresh
    connections of its own; their results are merged. Processes are started
    (spawned: nothing of this one's loop or connections is inherited) and ready
    before the schedule begins.
    """
    if processes <= 1:
        return await storm(
            target,
            code,
            run_id,
            factor=factor,
            capacity_rate=capacity_rate,
            seconds=seconds,
            client_timeout=client_timeout,
        )
    context = multiprocessing.get_context("spawn")
    pipes, workers = [], []
    for part in range(processes):
        ours, theirs = context.Pipe()
        spec = (target.servers, target.addresses[part::processes], target.keepalive)
        job = (spec, code, run_id, factor, capacity_rate, seconds, client_timeout, part, processes)
        worker = context.Process(target=_storm_part, args=(theirs, job), daemon=True)
        worker.start()
        pipes.append(ours)
        workers.append(worker)
    loop = asyncio.get_running_loop()
    try:
        for pipe in pipes:  # each says it is ready
            await loop.run_in_executor(None, pipe.recv)
        begin = perf_counter() + 0.1
        for pipe in pipes:
            pipe.send(begin)
        results = [await loop.run_in_executor(None, pipe.recv) for pipe in pipes]
    finally:
        for worker in workers:
            worker.join(timeout=5)
            if worker.is_alive():
                worker.kill()
    return merged(results)


def _storm_part(pipe: Any, job: tuple[Any, ...]) -> None:
    """A load-generator process's share of a storm (see :func:`storm_in_processes`)."""
    (
        (servers, addresses, keepalive),
        code,
        run_id,
        factor,
        capacity_rate,
        seconds,
        client_timeout,
        part,
        parts,
    ) = job
    target = Target([f"http://{host}:{port}" for host, port in servers], 1, keepalive=keepalive)
    target.addresses = addresses

    async def run() -> Offered:
        await target.warm()
        pipe.send("ready")
        begin = await asyncio.get_running_loop().run_in_executor(None, pipe.recv)
        try:
            return await storm(
                target,
                code,
                run_id,
                factor=factor,
                capacity_rate=capacity_rate,
                seconds=seconds,
                client_timeout=client_timeout,
                begin=begin,
                part=part,
                parts=parts,
            )
        finally:
            await target.close()

    pipe.send(asyncio.run(run()))


def merged(parts: Sequence[Offered]) -> Offered:
    """One storm's result from its processes' parts."""
    first = parts[0]
    result = Offered(first.name, factor=first.factor, target_rate=first.target_rate)
    for part in parts:
        result.statuses.update(part.statuses)
        result.errors.update(part.errors)
        result.timeouts += part.timeouts
        result.connections += part.connections
        result.retry_after_missing += part.retry_after_missing
        result.admitted.update(part.admitted)
        result.late += part.late
        result.connecting += part.connecting
        result.loop_lag += part.loop_lag
        for status, values in part.latencies.items():
            result.latencies.setdefault(status, []).extend(values)
        for status, values in part.answering.items():
            result.answering.setdefault(status, []).extend(values)
    result.seconds = max(part.seconds for part in parts)
    result.offered_rate = sum(part.offered_rate * part.seconds for part in parts) / result.seconds
    return result


async def _sample_lag(lags: list[float], interval: float = 0.01) -> None:
    """Append how late each ``interval`` timer of this loop ran, until cancelled."""
    while True:
        start = perf_counter()
        await asyncio.sleep(interval)
        lags.append(max(0.0, perf_counter() - start - interval))


@dataclass
class CrowdResult:
    players: int
    seconds: float = 0.0
    final: Counter[int] = field(default_factory=Counter)
    attempts: Counter[int] = field(default_factory=Counter)  # every attempt's status (0: no answer)
    gave_up: int = 0
    admitted: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


async def crowd(
    target: Target,
    code: str,
    run_id: str,
    *,
    players: int,
    client_timeout: float,
    deadline: float,
    seed: int | None,
) -> CrowdResult:
    """``players`` join at once; each retries 429, 503 and timeouts with backoff and its idempotency key."""
    result = CrowdResult(players)
    rng = random.Random(seed)
    policy = Backoff(base=0.5, cap=8.0, max_attempts=100)
    until = time.monotonic() + deadline

    async def player(n: int) -> None:
        nickname = f"cr{run_id}-{n}"
        key = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        own_rng = random.Random(rng.random())

        async def send() -> Response:
            try:
                response = await _join_once(target, code, nickname, key, client_timeout)
            except ConnectionFailed:
                result.attempts[0] += 1
                raise
            result.attempts[response.status] += 1
            return response

        outcome = await with_backoff(send, policy=policy, rng=own_rng, deadline=until, idempotent=True)
        if outcome.response is None or outcome.error:
            result.gave_up += 1
        status = outcome.response.status if outcome.response is not None else 0
        result.final[status] += 1
        if status == 201 and outcome.response is not None:
            body = outcome.response.json()
            result.admitted[nickname] = int(body["player_id"])
            result.tokens[nickname] = str(body["token"])

    started = perf_counter()
    await asyncio.gather(*(player(n) for n in range(players)))
    result.seconds = perf_counter() - started
    return result


# -- the report --------------------------------------------------------------------------------------


def _p50_p99(values: list[float]) -> str:
    return f"{ms(percentile(values, 50))} / {ms(percentile(values, 99))}"


def _statuses(counter: Counter[int]) -> str:
    return ", ".join(f"{status or 'no answer'}: {n}" for status, n in sorted(counter.items())) or "none"


def report_storms(
    report: Report,
    *,
    healthz: list[float],
    base: Offered,
    storms: list[Offered],
    stored: dict[str, dict[str, int]],
    goals: dict[str, float],
) -> None:
    """Figures and checks of the capacity run and the storms; ``stored``: game code's rows by phase name."""
    healthz_p99 = percentile(healthz, 99)
    base_rate = rate(base.statuses[201], base.seconds)
    report.figure(
        "GET /healthz, unloaded (one at a time)", f"p50 {ms(percentile(healthz, 50))}, p99 {ms(healthz_p99)}"
    )
    for level in base.levels or [base]:
        report.figure(
            f"capacity: {level.name}" + (" (the reference)" if level is base else ""),
            f"{rate(level.statuses[201], level.seconds):.0f} joins/s admitted; "
            f"201 p50 {ms(percentile(level.latencies.get(201, []), 50))} "
            f"p99 {ms(level.p99(201))}; {_statuses(level.statuses)}",
        )
    for result in storms:
        admitted = rate(result.statuses[201], result.seconds)
        report.figure(
            f"storm {result.name} capacity",
            f"offered {result.offered_rate:.0f}/s (asked {result.target_rate:.0f}/s) "
            f"for {result.seconds:.1f} s: "
            f"{_statuses(result.statuses)}, {result.timeouts} timed out; admitted {admitted:.0f}/s "
            f"({admitted / base_rate * 100 if base_rate else 0:.0f}% of capacity); "
            f"201 p99 {ms(result.p99(201))}, 429 p50 {ms(percentile(result.latencies.get(429, []), 50))} "
            f"p99 {ms(result.p99(429))}",
        )
        report.figure(
            f"storm {result.name}: where a request's time went (p50 / p99)",
            f"generator late {_p50_p99(result.late)} (its loop's lag {_p50_p99(result.loop_lag)}); "
            f"connecting {_p50_p99(result.connecting)} ({result.connections} connections opened); "
            f"server's 429 (written → answered) {_p50_p99(result.answering.get(429, []))}; "
            f"201 {_p50_p99(result.answering.get(201, []))}",
        )
        others = {status: n for status, n in result.statuses.items() if status not in (201, 429)}
        report.check(
            f"storm {result.name}: every request answered in time, only 201 and 429",
            result.timeouts == 0 and not result.errors and not others,
            f"{result.timeouts} timeouts, errors {dict(result.errors)}, other statuses {others}",
        )
        report.check(f"storm {result.name}: every 429 has Retry-After", result.retry_after_missing == 0)
        rows = stored.get(result.name, {})
        report.check(
            f"storm {result.name}: the database holds exactly the players that got a 201",
            rows == result.admitted,
            f"{len(rows)} rows, {len(result.admitted)} 201s",
        )
        p99_429 = result.p99(429)
        ratio = goals["refusal_p99_ratio"]
        report.check(
            f"storm {result.name}: 429 p99 ≤ {ratio:g}× unloaded /healthz p99",
            p99_429 is None or (healthz_p99 is not None and p99_429 <= ratio * healthz_p99),
            f"{ms(p99_429)} vs {ms(healthz_p99)}",
            goal=True,
        )
        p99_201 = result.p99(201)
        report.check(
            f"storm {result.name}: 201 p99 ≤ {goals['admitted_p99']:g} s",
            p99_201 is not None and p99_201 <= goals["admitted_p99"],
            ms(p99_201),
            goal=True,
        )
    if storms:
        worst = storms[-1]
        admitted = rate(worst.statuses[201], worst.seconds)
        report.check(
            f"goodput at {worst.name} capacity ≥ {goals['goodput']:.0%} of capacity",
            base_rate > 0 and admitted >= goals["goodput"] * base_rate,
            f"{admitted:.0f} vs {base_rate:.0f} joins/s",
            goal=True,
        )


def report_crowd(report: Report, result: CrowdResult, stored: dict[str, int], tokens_ok: int) -> None:
    report.figure(
        f"crowd: {result.players} players at once, backoff with jitter",
        f"all done in {result.seconds:.1f} s; final {_statuses(result.final)}; "
        f"attempts {_statuses(result.attempts)}",
    )
    report.check(
        "crowd: every player joined, none got 409",
        result.final[201] == result.players and result.attempts[409] == 0,
        f"final {_statuses(result.final)}, {result.gave_up} gave up, {result.attempts[409]} 409s",
    )
    report.check(
        "crowd: the database holds exactly the players that got a 201",
        stored == result.admitted,
        f"{len(stored)} rows, {len(result.admitted)} 201s",
    )
    report.check(
        "crowd: every token returned is its player's",
        tokens_ok == len(result.admitted),
        f"{tokens_ok} of {len(result.admitted)}",
    )


def report_global(
    report: Report, result: Offered, *, configured: float, servers: int, tolerance: float
) -> None:
    admitted = rate(result.statuses[201], result.seconds)
    report.figure(
        f"global rate: {servers} processes, {result.factor:g}× the configured {configured:g}/s",
        f"offered {result.offered_rate:.0f}/s for {result.seconds:.1f} s: {_statuses(result.statuses)}, "
        f"{result.timeouts} timed out; admitted {admitted:.1f}/s",
    )
    report.check(
        f"global rate: admitted within ±{tolerance:.0%} of the configured rate",
        abs(admitted - configured) <= tolerance * configured,
        f"{admitted:.1f} vs {configured:g} joins/s ({(admitted / configured - 1) * 100:+.1f}%)",
        goal=True,
    )


def tokens_match(stored_hashes: dict[str, str], tokens: dict[str, str]) -> int:
    """How many returned tokens hash to their player's stored token hash."""
    return sum(
        1
        for nickname, token in tokens.items()
        if stored_hashes.get(nickname) == hashlib.sha256(token.encode()).hexdigest()
    )
