"""Scale-out scenarios: one process alone against two behind nginx, and 20,000 idle connections.

``scale-fanout``
    The same burst against one process of ours on the embedded default (in-memory
    layer, no proxy) and against two processes sharing a Redis of the run's own,
    behind nginx (subscribers and publisher all through the proxy). Deliveries per
    CPU-second of the server processes; nginx's CPU apart (the proxy's cost); the
    Redis commands the burst caused, per publish, at two subscriber counts.
``scale-joins``
    ``quiz_storm``'s closed-loop capacity phase (:mod:`bench.fanout.joins`) against
    the same two set-ups: admitted joins per server CPU-second. The join limits are
    raised out of the way (the global one in Redis would cap the 2-process run, and
    behind the proxy every client has the proxy's address).
``scale-global``
    Two processes sharing a low configured ``QUIZ_JOIN_RATE`` in Redis, offered 3×
    it for 10 s across both: the admitted rate (±5 %).
``idle-20k``
    20,000 connections (``connection_init`` + a subscription each) held open over
    two processes + Redis by several load-generator processes (each within the
    file-descriptor limit); RSS per connection measured against the one predicted
    from a 2,000-connection step, and a fan-out to all of them: deliveries per
    server CPU-second and Redis commands per publish at this size.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from . import servers as srv
from .infra import Nginx, PrivateRedis, redis_counters, redis_delta
from .joins import per_cpu

if TYPE_CHECKING:
    from .cli import Bench

SCALE_SCENARIOS = ("scale-fanout", "scale-joins", "scale-global", "idle-20k")
KIND_NAME = "scale"

# Join limits out of the way for the capacity comparison (both set-ups alike).
UNLIMITED_JOINS = {"QUIZ_JOIN_RATE": "1000000/s", "QUIZ_JOIN_RATE_PER_CLIENT": "1000000/s"}
# Every server process relays its own commits, as on the embedded default: all
# of a join's work is in the processes measured (no `realtime_relay` apart).
SCALED_ENV = {"REALTIME_RELAY": "inprocess"}
# A connect refused by the server's admission control (429) is retried with backoff,
# as Amplify's clients do; the retries are counted.
RETRY_REFUSED = 8
# The leaderboard's pace (QUIZ["LEADERBOARD_INTERVAL"]): every event its own write.
PACED_INTERVAL = 0.5


class ProxyTarget:
    """nginx as the load generator sees it: one address, the servers' credentials."""

    def __init__(self, proxy: Nginx, api_key: str | None) -> None:
        self.port = proxy.port
        self.api_key = api_key

    def target(self) -> dict[str, Any]:
        host = f"127.0.0.1:{self.port}"
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "path": srv.WS_PATH,
            "subprotocols": srv.auth_subprotocols(self.api_key, host),
        }


def _cpu(pids: list[int]) -> float:
    return sum(srv.cpu_seconds(pid) for pid in pids)


class Scale:
    def __init__(self, bench: Bench, kind: srv.Kind) -> None:
        self.bench = bench
        self.kind = kind
        self.redis: PrivateRedis | None = None
        self.proxies: list[Nginx] = []

    # -- set-ups ----------------------------------------------------------------

    def private_redis(self) -> PrivateRedis:
        if self.redis is None:
            self.redis = PrivateRedis.start(self.bench.workdir, nice=self.bench.args.nice)
            self.bench.meta["scale_redis"] = {"url": self.redis.url, **(srv.redis_info(self.redis.url) or {})}
        return self.redis

    def start_proxy(self, servers: list[srv.Server]) -> Nginx:
        # On the servers' core nginx shares their caches and time slices (what a small
        # machine does); on the generator's it is measured apart from them alone.
        on_load = self.bench.args.proxy_cores == "load"
        cores = self.bench.loadgen.cores if on_load else self.bench.pool.server_cores
        proxy = Nginx.start(
            self.bench.workdir,
            [s.port for s in servers],
            None if self.bench.pool.spread else cores,
            nice=self.bench.args.nice,
        )
        self.proxies.append(proxy)
        return proxy

    def stop_proxy(self, proxy: Nginx) -> None:
        proxy.stop()
        self.proxies.remove(proxy)

    def close(self) -> None:
        for proxy in list(self.proxies):
            self.stop_proxy(proxy)
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    def run(self, wanted: list[str]) -> None:
        try:
            if "scale-fanout" in wanted or "scale-joins" in wanted:
                self.one_against_two(wanted)
            if "scale-global" in wanted:
                self.bench.attempt(KIND_NAME, "scale-global", self.global_rate)
            if "idle-20k" in wanted:
                self.bench.attempt(KIND_NAME, "idle-20k", self.idle)
        finally:
            self.close()

    # -- 1 process vs 2 behind nginx ---------------------------------------------

    def one_against_two(self, wanted: list[str]) -> None:
        bench, pool, site = self.bench, self.bench.pool, self.bench.site
        env = {**SCALED_ENV, **UNLIMITED_JOINS}
        bench.quiet()
        bench.log(f"{self.kind.name}: one process, embedded default, no proxy")
        one = pool.start(self.kind, site=site, env=env)
        try:
            bench.warmup([one])
            if "scale-fanout" in wanted:
                bench.attempt(KIND_NAME, "fanout-1", self.fanout, [one], [one], None, "s1")
                bench.attempt(KIND_NAME, "private-1", self.private, [one], [one], None, "p1")
            if "scale-joins" in wanted:
                bench.attempt(KIND_NAME, "joins-1", self.joins, [one], one.target_url(), None)
        finally:
            pool.stop(one)
        redis = self.private_redis()
        # The same process on Redis, still without a proxy: what Redis alone costs.
        bench.quiet()
        bench.log(f"{self.kind.name}: one process + Redis ({redis.url}), no proxy")
        one = pool.start(self.kind, site=site, redis_url=redis.url, env=env)
        try:
            bench.warmup([one])
            if "scale-fanout" in wanted:
                bench.attempt(KIND_NAME, "fanout-1r", self.fanout, [one], [one], None, "s1r")
                bench.attempt(KIND_NAME, "private-1r", self.private, [one], [one], None, "p1r")
            if "scale-joins" in wanted:
                bench.attempt(KIND_NAME, "joins-1r", self.joins, [one], one.target_url(), None)
        finally:
            pool.stop(one)
        bench.quiet()
        bench.log(f"{self.kind.name} x2 + Redis ({redis.url}) behind nginx")
        two = pool.start_many(self.kind, 2, site=site, redis_url=redis.url, env=env)
        proxy = self.start_proxy(two)
        try:
            front = ProxyTarget(proxy, site.api_key if site else None)
            self.warmup(front, two)
            if "scale-fanout" in wanted:
                bench.attempt(KIND_NAME, "fanout-2", self.fanout, [front], two, proxy, "s2")
                # The same burst to a tenth of the subscribers: Redis commands per publish
                # must not change (O(processes), not O(subscribers)).
                bench.attempt(
                    KIND_NAME,
                    "fanout-2-small",
                    self.fanout,
                    [front],
                    two,
                    proxy,
                    "s2small",
                    max(2, bench.sizes.scale_subscribers // 10),
                )
                bench.attempt(KIND_NAME, "private-2", self.private, [front], two, proxy, "p2")
            if "scale-joins" in wanted:
                bench.attempt(KIND_NAME, "joins-2", self.joins, two, f"http://127.0.0.1:{proxy.port}", proxy)
        finally:
            self.stop_proxy(proxy)
            for server in two:
                pool.stop(server)

    def warmup(self, front: ProxyTarget, servers: list[srv.Server]) -> None:
        s = self.bench.sizes
        job = self.bench.job(
            "warmup",
            servers,
            channel=self.bench.channel("warmup-proxy"),
            subscribers=s.warmup_subscribers,
            events=s.warmup_events,
        )
        job["targets"] = [front.target()]
        self.bench.loadgen_run(job)

    def fanout(
        self,
        targets: list[Any],
        servers: list[srv.Server],
        proxy: Nginx | None,
        name: str,
        subscribers: int | None = None,
        private: bool = False,
    ) -> dict[str, Any]:
        bench, s = self.bench, self.bench.sizes
        runs = []
        for i in range(max(1, bench.args.repeat or s.repeat)):
            job = bench.job(
                "burst",
                servers,
                channel=bench.channel(f"{name}-{i}"),
                subscribers=subscribers or s.scale_subscribers,
                # One publishing connection may send a burst of 100 (PUBLISH_RATE_PER_CONNECTION).
                events=s.private_events if private else s.burst_events,
                private=private,
            )
            job["targets"] = [t.target() for t in targets]
            job["retry_refused"] = RETRY_REFUSED
            if proxy is not None:
                job["proxy_pids"] = proxy.pids()
            if self.redis is not None and proxy is not None:
                job["redis_counters_url"] = self.redis.url
            runs.append(bench.loadgen_run(job))
        best = max(runs, key=lambda r: (r.get("delivered", 0), r.get("deliveries_per_server_cpu_s") or 0))
        if len(runs) > 1:
            best = dict(best)
            best["all_deliveries_per_server_cpu_s"] = [r.get("deliveries_per_server_cpu_s") for r in runs]
        return best

    def private(
        self, targets: list[Any], servers: list[srv.Server], proxy: Nginx | None, name: str
    ) -> dict[str, Any]:
        """A score to each player: every subscriber alone on its channel, one publish each."""
        return self.fanout(targets, servers, proxy, name, self.bench.sizes.private_subscribers, True)

    def joins(self, servers: list[srv.Server], url: str, proxy: Nginx | None) -> dict[str, Any]:
        bench = self.bench
        runs = []
        reference = self.join_levels()
        # Several processes behind the proxy: the reference levels (the same loops
        # in all as one process had) and each times their number (the same loops
        # per process: the load each process batches), reported apart.
        per_process = sorted({loops * len(servers) for loops in reference}) if len(servers) > 1 else []
        for _ in range(max(1, bench.args.repeat or bench.sizes.repeat)):
            job = {
                "mode": "capacity",
                "urls": [url],
                "seconds": bench.sizes.joins_seconds,
                "levels": sorted(set(reference) | set(per_process)),
                "reference_levels": reference,
                "per_process_levels": per_process,
                "processes": len(servers),
                "server_pids": [s.pid for s in servers],
                "proxy_pids": proxy.pids() if proxy else [],
            }
            runs.append(self.joins_run(job))
        best = max(runs, key=per_cpu)
        if len(runs) > 1:
            best = dict(best)
            best["all_joins_per_server_cpu_s"] = [r.get("joins_per_server_cpu_s") for r in runs]
        if per_process:
            best = dict(best)
            best["per_process_best"] = max(
                (r["per_process_best"] for r in runs if r.get("per_process_best")),
                key=per_cpu,
            )
            best["all_per_process_joins_per_server_cpu_s"] = [
                (r.get("per_process_best") or {}).get("joins_per_server_cpu_s") for r in runs
            ]
        return best

    def join_levels(self) -> list[int]:
        """The capacity levels (``bench.fanout.joins`` checks them against the
        servers' in-flight limit)."""
        return [int(n) for n in self.bench.sizes.joins_levels.split(",") if n.strip()]

    def joins_run(self, job: dict[str, Any], env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run :mod:`bench.fanout.joins` with the servers' database and ``env``
        (the configured join rate is read from it)."""
        bench = self.bench
        assert bench.site is not None
        server_env = {**srv.our_env(bench.site.database_url), **(env or {})}
        return bench.loadgen.run(
            job,
            timeout=float(job["seconds"]) + 120,
            module="bench.fanout.joins",
            env=server_env,
        )

    # -- the global join rate ------------------------------------------------------

    def global_rate(self) -> dict[str, Any]:
        bench = self.bench
        redis = self.private_redis()
        env = {
            **SCALED_ENV,
            "QUIZ_JOIN_RATE": bench.sizes.global_rate,
            "QUIZ_JOIN_RATE_PER_CLIENT": "1000000/s",
        }
        bench.quiet()
        # Not pinned: the 3x offered (joins and refusals) would outrun two processes
        # sharing one core, and the figure here is the rate admitted, not CPU per join.
        two = bench.pool.start_many(self.kind, 2, site=bench.site, redis_url=redis.url, env=env, pin=False)
        try:
            job = {
                "mode": "global",
                "urls": [s.target_url() for s in two],
                "factor": 3.0,
                "seconds": bench.sizes.global_seconds,
                "server_pids": [s.pid for s in two],
            }
            return self.joins_run(job, env)
        finally:
            for server in two:
                bench.pool.stop(server)

    # -- 20,000 idle connections ---------------------------------------------------

    def idle(self) -> dict[str, Any]:
        bench, s = self.bench, self.bench.sizes
        redis = self.private_redis()
        bench.quiet()
        two = bench.pool.start_many(self.kind, 2, site=bench.site, redis_url=redis.url, env=SCALED_ENV)
        try:
            for server in two:
                bench.warmup([server])
            pids = [server.pid for server in two]
            time.sleep(s.settle)
            base = sum(srv.rss_kib(pid) for pid in pids)
            calibration = self.hold(two, s.idle_calibration, channel=None)
            after_calibration = calibration.pop("rss_kib")
            # Python's allocator keeps what it freed: measure the step from a new baseline.
            time.sleep(s.settle)
            base_full = sum(srv.rss_kib(pid) for pid in pids)
            kib_calibration = (after_calibration - base) / max(1, calibration["open"])
            full = self.hold(
                two,
                s.idle_connections,
                channel=bench.channel("idle"),
                events=s.idle_events,
                paced=s.idle_paced_events,
            )
            measured_kib = full.pop("rss_kib")
            opened = full["open"]
            predicted = base_full + kib_calibration * opened
            result = {
                "connections": s.idle_connections,
                "processes": len(two),
                "rss_base_kib": base_full,
                "rss_at_full_kib": measured_kib,
                "kib_per_connection": (measured_kib - base_full) / opened if opened else None,
                "calibration_connections": calibration["open"],
                "kib_per_connection_calibration": kib_calibration,
                "rss_predicted_kib": predicted,
                "rss_measured_vs_predicted": measured_kib / predicted if predicted else None,
                **full,
            }
            if opened < s.idle_connections:
                result["error"] = f"only {opened} of {s.idle_connections} connections opened"
            return result
        finally:
            for server in two:
                bench.pool.stop(server)

    def hold(
        self,
        servers: list[srv.Server],
        connections: int,
        *,
        channel: str | None,
        events: int = 0,
        paced: int = 0,
    ) -> dict[str, Any]:
        """Open ``connections`` over ``servers`` from several load generators and hold them;
        while held: RSS, idle CPU and (with a ``channel``) a fan-out of ``events`` to them all
        at once, then of ``paced`` more at the leaderboard's 2 a second (one write per event)."""
        bench, s = self.bench, self.bench.sizes
        per_client = s.idle_per_client
        clients = max(1, -(-connections // per_client))
        counts = [connections // clients + (1 if i < connections % clients else 0) for i in range(clients)]
        pids = [server.pid for server in servers]
        arrived = threading.Barrier(clients + 1)
        release = threading.Event()
        opened: list[int] = []
        results: list[dict[str, Any] | BaseException] = []

        def on_hold(info: dict[str, Any]) -> None:
            opened.append(int(info["open"]))
            arrived.wait()
            release.wait()

        def client(count: int) -> None:
            job = bench.job("connect", servers, connections=count, hold=True, settle=s.settle)
            # The handshakes in flight are shared out: the servers' listen backlogs see
            # no more than one load generator would send them.
            job.update(
                {
                    "timeout": s.timeout,
                    "concurrency": max(4, s.concurrency // clients),
                    "retry_refused": RETRY_REFUSED,
                }
            )
            if channel:
                job.update({"channel": channel, "events": events + paced, "drain": 30.0})
            try:
                results.append(bench.loadgen_run(job, on_hold=on_hold))
            except BaseException as exc:  # reported below; the others must not wait forever
                results.append(exc)
                arrived.abort()

        threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in counts]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        figures: dict[str, Any] = {}
        try:
            arrived.wait(timeout=s.timeout)
            figures["open_s"] = time.monotonic() - started
            figures["rss_kib"] = sum(srv.rss_kib(pid) for pid in pids)
            figures["rss_per_process_kib"] = [srv.rss_kib(pid) for pid in pids]
            cpu_before = _cpu(pids)
            time.sleep(s.idle_hold_window)
            # Share of one core the processes use while every connection idles.
            figures["idle_server_cpu"] = (_cpu(pids) - cpu_before) / s.idle_hold_window
            if channel and events:
                idle = figures["idle_server_cpu"]
                figures.update(self.publish_to_held(servers, channel, 0, events, 0.0, sum(opened), idle))
            if channel and paced:
                figures["paced"] = self.publish_to_held(
                    servers, channel, events, paced, PACED_INTERVAL, sum(opened), figures["idle_server_cpu"]
                )
        except threading.BrokenBarrierError:
            pass
        finally:
            release.set()
            for thread in threads:
                thread.join(s.timeout + 60)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise srv.BenchError(f"{len(errors)} load generator(s) failed: {str(errors[0])[:800]}")
        done = [r for r in results if isinstance(r, dict)]
        figures.update(
            {
                "open": sum(opened),
                "clients": clients,
                "connect_errors": sum(int(r.get("errors", 0)) for r in done),
                "connect_refusals_retried": sum(int(r.get("refusals_retried", 0)) for r in done),
                "connect_error_samples": [e for r in done for e in r.get("error_samples", ())][:5],
                "connects_per_s": sum(opened) / figures["open_s"] if figures.get("open_s") else None,
            }
        )
        if channel and events:
            for key in ("expected", "delivered", "lost", "duplicates"):
                figures[key] = sum(int(r.get(key, 0)) for r in done)
        return figures

    def publish_to_held(
        self,
        servers: list[srv.Server],
        channel: str,
        first: int,
        events: int,
        interval: float,
        subscribers: int,
        idle_cpu: float,
    ) -> dict[str, Any]:
        bench = self.bench
        pids = [server.pid for server in servers]
        assert self.redis is not None
        redis_before = redis_counters(self.redis.url)
        cpu_before = _cpu(pids)
        started = time.monotonic()
        job = bench.job(
            "publish",
            servers[:1],
            channel=channel,
            first=first,
            events=events,
            interval=interval,
            retry_refused=RETRY_REFUSED,
        )
        published = bench.loadgen_run(job)
        # The fan-out goes on after the acks: wait for the servers to fall back to their idle CPU.
        last = _cpu(pids)
        while time.monotonic() - started < bench.sizes.timeout:
            time.sleep(0.5)
            now = _cpu(pids)
            if now - last < 0.5 * (1.5 * idle_cpu + 0.05):
                break
            last = now
        window = time.monotonic() - started
        cpu_used = _cpu(pids) - cpu_before
        delta = redis_delta(redis_before, redis_counters(self.redis.url))
        delta["calls_per_publish"] = delta["total_calls"] / events
        deliveries = subscribers * events
        # What the connections cost doing nothing in the same window, measured just before.
        net = cpu_used - idle_cpu * window
        return {
            "publish": published,
            "interval_s": interval,
            "fanout_window_s": window,
            "fanout_server_cpu_s": cpu_used,
            "deliveries_per_server_cpu_s": deliveries / cpu_used if cpu_used > 0 else None,
            "deliveries_per_server_cpu_s_net_of_idle": deliveries / net if net > 0 else None,
            "redis": delta,
        }
