"""One soak run: connect, publish for the duration while sampling, drain, verify, report."""

from __future__ import annotations

import argparse
import asyncio
import time
from array import array
from dataclasses import asdict, dataclass
from typing import Any

from .clients import OPEN_CONCURRENCY, Soak, churn_for, clock
from .server import Server, SetupError, cpu_seconds, rss_kib

DRAIN_TIMEOUT = 15.0


@dataclass
class Sample:
    t: float
    connections: int
    rss_mib: float
    server_cpu: float
    client_cpu: float
    publishes_per_s: float
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(share * len(values)))]


HEADER = (
    f"{'t (s)':>6} {'conns':>6} {'RSS MiB':>8} {'ΔRSS':>7} {'srv CPU':>8} {'cli CPU':>8} "
    f"{'pub/s':>6} {'deliv/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
)


def row(sample: Sample, baseline: float | None) -> str:
    delta = "" if baseline is None else f"{(sample.rss_mib / baseline - 1) * 100:+.1f}%"
    return (
        f"{sample.t:6.0f} {sample.connections:6d} {sample.rss_mib:8.1f} {delta:>7} "
        f"{sample.server_cpu:7.0f}% {sample.client_cpu:7.0f}% {sample.publishes_per_s:6.1f} "
        f"{sample.deliveries_per_s:8.0f} {sample.p50_ms:7.1f} {sample.p99_ms:7.1f} {sample.max_ms:7.1f}"
    )


class Sampler:
    def __init__(self, soak: Soak, pid: int) -> None:
        self.soak = soak
        self.pid = pid
        self.samples: list[Sample] = []
        self._last = (clock(), cpu_seconds(pid), time.process_time(), 0, 0)

    def take(self, t: float) -> Sample:
        now, server_cpu, client_cpu = clock(), cpu_seconds(self.pid), time.process_time()
        soak = self.soak
        last_now, last_server, last_client, last_published, last_delivered = self._last
        elapsed = max(now - last_now, 1e-9)
        latencies = sorted(soak.stats.window_latencies)
        soak.stats.all_latencies.extend(latencies)
        soak.stats.window_latencies = array("d")
        sample = Sample(
            t=t,
            connections=len(soak.conns),
            rss_mib=rss_kib(self.pid) / 1024,
            server_cpu=(server_cpu - last_server) / elapsed * 100,
            client_cpu=(client_cpu - last_client) / elapsed * 100,
            publishes_per_s=(soak.published - last_published) / elapsed,
            deliveries_per_s=(soak.stats.deliveries - last_delivered) / elapsed,
            p50_ms=percentile(latencies, 0.50) * 1000,
            p99_ms=percentile(latencies, 0.99) * 1000,
            max_ms=(latencies[-1] * 1000) if latencies else float("nan"),
        )
        self._last = (now, server_cpu, client_cpu, soak.published, soak.stats.deliveries)
        self.samples.append(sample)
        return sample


async def run_soak(args: argparse.Namespace, server: Server) -> dict[str, Any]:
    soak = Soak(args, server)
    duration = args.minutes * 60
    out = args.out

    print(
        f"soak: {args.connections} connections × {args.subscriptions} subscriptions over {args.channels} "
        f"channels; {args.rate:g} publishes/s for {duration:.0f} s; churn {args.churn:g}/s; server pid "
        f"{server.pid} at {soak.url}",
        file=out,
        flush=True,
    )
    assert server.pid is not None
    sampler = Sampler(soak, server.pid)  # its first row covers the connect phase
    opened_at = clock()
    limiter = asyncio.Semaphore(OPEN_CONCURRENCY)

    async def open_one(number: int) -> None:
        async with limiter:
            await soak.open_subscriber(number)

    results = await asyncio.gather(*(open_one(n) for n in range(args.connections)), return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    connect_seconds = clock() - opened_at
    print(
        f"opened {soak.opened}/{args.connections} connections in {connect_seconds:.1f} s"
        + (f"; {len(failures)} failed, e.g. {failures[0]}" if failures else ""),
        file=out,
        flush=True,
    )

    warmup = args.warmup if args.warmup is not None else min(60.0, duration / 5)
    last_window = min(60.0, duration / 3)
    print(HEADER, file=out, flush=True)
    start = clock()
    baseline: float | None = None

    def sample_now() -> None:
        nonlocal baseline
        sample = sampler.take(clock() - start)
        if baseline is None and sample.t >= warmup - 1e-6:
            baseline = sample.rss_mib
        print(row(sample, baseline), file=out, flush=True)

    sample_now()
    publisher = asyncio.get_running_loop().create_task(soak.publish_for(duration))
    churner = asyncio.get_running_loop().create_task(
        churn_for(soak, duration, args.churn, first_number=args.connections)
    )
    k = 1
    while k * args.sample_interval <= duration + 1e-6:
        await asyncio.sleep(max(0.0, start + k * args.sample_interval - clock()))
        if not server.alive():
            raise SetupError(f"the server exited during the run:\n{server.log_tail()}")
        sample_now()
        k += 1
    replaced = await churner
    await publisher
    # Drain: until every acknowledged event has had its chance to arrive.
    drain_start = clock()
    previous = -1
    while clock() - drain_start < DRAIN_TIMEOUT:
        await asyncio.sleep(0.5)
        if soak.stats.deliveries == previous:
            break
        previous = soak.stats.deliveries
    soak.stats.all_latencies.extend(soak.stats.window_latencies)
    rss_end = rss_kib(server.pid) / 1024
    for number in list(soak.conns):
        await soak.close_subscriber(number)
    await asyncio.sleep(2.0)
    rss_closed = rss_kib(server.pid) / 1024

    expected, missing, duplicated = soak.check_deliveries()
    latencies = sorted(soak.stats.all_latencies)
    samples = sampler.samples
    after_warmup = [s for s in samples if s.t >= warmup - 1e-6]
    tail = [s for s in samples if s.t >= duration - last_window - 1e-6]
    assert baseline is not None
    worst_tail = max(s.rss_mib for s in tail)
    memory_check = (
        f"memory flat (last {last_window:.0f} s within {args.rss_tolerance:.0%} "
        f"of t={after_warmup[0].t:.0f} s)"
    )
    checks = {
        "all connections opened": not failures and soak.opened == args.connections + replaced,
        "no connection closed by the server": not soak.stats.server_closes,
        "every publish acknowledged": not soak.publish_failures and soak.published > 0,
        "nothing lost": missing == 0 and expected > 0,
        "nothing duplicated or misrouted": duplicated == 0 and soak.stats.foreign == 0,
        "no unexpected frame": not soak.stats.errors,
        memory_check: worst_tail <= baseline * (1 + args.rss_tolerance),
    }
    overall_p99 = percentile(latencies, 0.99) * 1000
    if args.max_p99_ms is not None:
        checks[f"p99 latency ≤ {args.max_p99_ms:g} ms"] = overall_p99 <= args.max_p99_ms

    print(file=out)
    print(
        f"connections: {soak.opened} opened in total ({replaced} replacements), connect phase "
        f"{connect_seconds:.1f} s; server closes: {len(soak.stats.server_closes)}",
        file=out,
    )
    print(
        f"publishes: {soak.published} sent, {len(soak.publish_failures)} failed; deliveries: "
        f"{soak.stats.deliveries} received, {expected} expected, {missing} missing, {duplicated} duplicated",
        file=out,
    )
    print(
        f"latency over the run: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
        f"p99 {overall_p99:.1f} ms, max {latencies[-1] * 1000 if latencies else float('nan'):.1f} ms",
        file=out,
    )
    print(
        f"server RSS: {samples[0].rss_mib:.1f} MiB connected, {baseline:.1f} MiB after warm-up, "
        f"max {worst_tail:.1f} MiB in the last {last_window:.0f} s "
        f"({(worst_tail / baseline - 1) * 100:+.1f}%), "
        f"{rss_end:.1f} MiB at the end, {rss_closed:.1f} MiB after closing every connection",
        file=out,
    )
    for problem in (soak.stats.server_closes + soak.publish_failures + soak.stats.errors + failures)[:10]:
        print(f"  problem: {problem}", file=out)
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}", file=out)
    verdict = all(checks.values())
    print(f"VERDICT: {'PASS' if verdict else 'FAIL'}", file=out, flush=True)
    return {
        "verdict": "PASS" if verdict else "FAIL",
        "checks": checks,
        "connections": args.connections,
        "replaced": replaced,
        "published": soak.published,
        "deliveries": soak.stats.deliveries,
        "expected": expected,
        "missing": missing,
        "duplicated": duplicated,
        "rss_baseline_mib": baseline,
        "rss_tail_max_mib": worst_tail,
        "rss_end_mib": rss_end,
        "rss_closed_mib": rss_closed,
        "latency_p50_ms": percentile(latencies, 0.5) * 1000,
        "latency_p99_ms": overall_p99,
        "samples": [asdict(s) for s in samples],
    }
