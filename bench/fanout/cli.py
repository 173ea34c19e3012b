"""``python -m bench.fanout``: run the servers side by side and print the figures.

The orchestrator (this process) prepares our server's database, starts each
server as a subprocess pinned to the server core, and runs every measurement
in a fresh load-generator subprocess pinned to the other core(s). It never
talks WebSocket itself. See docs/BENCHMARKS.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import string
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import servers as srv
from .report import evaluate_goals, render
from .scale import SCALE_SCENARIOS, Scale

SCENARIOS = ("memory", "connect", "burst", "steady", "steady-5k", "redis", "redis-steady")
# Not in the default run (they start nginx and a Redis of their own, and take minutes):
# asked for by name, e.g. --scenarios scale-fanout scale-joins scale-global idle-20k.
ALL_SCENARIOS = SCENARIOS + SCALE_SCENARIOS
DEFAULT_SERVERS = ("ours-daphne", "ours-uvicorn", "ref-daphne", "ceiling")


@dataclass
class Sizes:
    burst_subscribers: int = 1000
    burst_events: int = 100
    steady_subscribers: int = 1000
    steady_rate: float = 10.0
    steady_duration: float = 10.0
    steady_drain: float = 5.0
    steady_large_subscribers: int = 5000
    connect_connections: int = 1000
    memory_connections: int = 5000
    redis_subscribers: int = 1000
    redis_events: int = 100
    concurrency: int = 32
    repeat: int = 1
    settle: float = 1.0
    idle_window: float = 3.0
    grace: float = 0.3
    warmup_subscribers: int = 20
    warmup_events: int = 20
    timeout: float = 240.0
    scale_subscribers: int = 5000
    private_subscribers: int = 2000
    private_events: int = 5
    joins_seconds: float = 5.0
    # quiz_storm's capacity levels: each below the front door's MAX_IN_FLIGHT (64),
    # which would otherwise refuse the loops and measure itself, not the joins.
    joins_levels: str = "4,8,16,32"
    global_rate: str = "100/s burst 10"
    global_seconds: float = 10.0
    idle_connections: int = 20000
    idle_calibration: int = 2000
    idle_events: int = 20
    idle_paced_events: int = 20
    idle_per_client: int = 5000
    idle_hold_window: float = 10.0

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            burst_subscribers=200,
            burst_events=20,
            steady_subscribers=200,
            steady_duration=1.0,
            steady_drain=1.0,
            steady_large_subscribers=500,
            connect_connections=200,
            memory_connections=500,
            redis_subscribers=200,
            redis_events=20,
            settle=0.2,
            idle_window=0.5,
            grace=0.1,
            warmup_subscribers=10,
            warmup_events=5,
            timeout=40.0,
            scale_subscribers=200,
            private_subscribers=100,
            private_events=2,
            joins_seconds=2.0,
            joins_levels="4,16",
            global_rate="50/s burst 5",
            global_seconds=2.0,
            idle_connections=400,
            idle_calibration=100,
            idle_events=2,
            idle_paced_events=2,
            idle_per_client=200,
            idle_hold_window=0.5,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.fanout",
        description="WebSocket fan-out benchmark: our server vs. the Channels tutorial pattern "
        "vs. bare websockets.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="reduced sizes (200 subscribers), well under a minute"
    )
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=ALL_SCENARIOS,
        default=list(SCENARIOS),
        metavar="SCENARIO",
        help=f"any of {', '.join(ALL_SCENARIOS)} (default: {' '.join(SCENARIOS)}); the scale "
        "scenarios run on the first of ours in --servers",
    )
    parser.add_argument(
        "--servers",
        nargs="+",
        choices=sorted(srv.KINDS),
        default=list(DEFAULT_SERVERS),
        metavar="SERVER",
        help=f"any of {', '.join(sorted(srv.KINDS))} (default: {' '.join(DEFAULT_SERVERS)})",
    )
    parser.add_argument("--json", metavar="PATH", help="also write every figure as JSON to PATH")
    parser.add_argument(
        "--database-url",
        default="",
        help="our server's database (default: a temporary SQLite file); scale-joins and "
        "scale-global want PostgreSQL, e.g. postgres://postgres@127.0.0.1:5432/realtime_bench",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"),
        help="Redis for the 2-process scenario (default: %(default)s; env BENCH_REDIS_URL)",
    )
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin servers and load generator to cores"
    )
    parser.add_argument(
        "--proxy-cores",
        choices=("server", "load"),
        default="server",
        help="the scale-out scenarios' nginx: on the servers' core (default) or the load generator's",
    )
    parser.add_argument(
        "--spread",
        action="store_true",
        help="each server process pinned to a core of its own; the load generator and nginx not pinned",
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=0,
        metavar="N",
        help="run servers and load generator at this nice value; a negative N (root only) keeps other "
        "programs on a shared machine from distorting the figures",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="before each server, wait up to SECONDS for the machine to be < 10%% busy with other work",
    )
    parser.add_argument(
        "--client",
        choices=("raw", "websockets"),
        default="raw",
        help="subscriber client: the built-in fast asyncio protocol (default) or the websockets library",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        help="run each burst and connect measurement N times and keep the best (default 1): "
        "on a shared machine the best run is the one least disturbed by other programs",
    )
    sizes = parser.add_argument_group("sizes (override the defaults of the chosen mode)")
    for name, help_text in (
        ("burst-subscribers", "subscribers in the burst"),
        ("burst-events", "events in the burst"),
        ("steady-subscribers", "subscribers in the steady run"),
        ("steady-rate", "events per second in the steady run"),
        ("steady-duration", "seconds of steady publishing"),
        ("steady-large-subscribers", "subscribers in the steady-5k run"),
        ("connect-connections", "connections opened for connects/s"),
        ("memory-connections", "idle connections for RSS per connection"),
        ("redis-subscribers", "subscribers in the 2-process Redis burst"),
        ("redis-events", "events in the 2-process Redis burst"),
        ("concurrency", "handshakes in flight while connecting"),
        ("scale-subscribers", "subscribers of each scale-fanout burst (of burst-events)"),
        ("joins-seconds", "seconds of closed-loop joins per level and set-up (scale-joins)"),
        ("global-seconds", "seconds of 3x the configured join rate (scale-global)"),
        ("idle-connections", "connections held over 2 processes (idle-20k)"),
        ("idle-per-client", "connections per load-generator process (idle-20k)"),
    ):
        sizes.add_argument(
            f"--{name}",
            type=float if "rate" in name or "duration" in name or "seconds" in name else int,
            help=help_text,
        )
    sizes.add_argument(
        "--joins-levels",
        help='closed loops of each capacity level, each below MAX_IN_FLIGHT (scale-joins; "4,8,16,32")',
    )
    sizes.add_argument(
        "--global-rate", help='the configured QUIZ_JOIN_RATE (scale-global; default "100/s burst 10")'
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory (server logs, database)"
    )
    parser.add_argument(
        "--profile",
        metavar="DIR",
        help="sample each server with py-spy during the burst and write collapsed stacks to DIR "
        "(needs py-spy on PATH or in the venv)",
    )
    return parser.parse_args(argv)


def run_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.sizes = Sizes.quick() if args.quick else Sizes()
        for field_name in asdict(self.sizes):
            value = getattr(args, field_name, None)
            if value is not None:
                setattr(self.sizes, field_name, value)
        self.t0 = time.monotonic()
        self.python = srv.default_python()
        self.workdir = srv.make_workdir()
        server_cores, load_cores = srv.cores_for(not args.no_pin)
        if args.spread:
            load_cores = None
        self.pool = srv.ServerPool(
            self.python, self.workdir, server_cores, nice=args.nice, spread=args.spread
        )
        self.loadgen = srv.LoadGen(self.python, load_cores, nice=args.nice)
        self.run = run_id()
        self.results: dict[str, dict[str, Any]] = {}
        self.site: srv.OurSite | None = None
        self.redis_keys: list[str] = []
        self.meta: dict[str, Any] = {
            "run_id": self.run,
            "quick": bool(args.quick),
            "sizes": asdict(self.sizes),
            "server_cores": sorted(server_cores) if server_cores else None,
            "loadgen_cores": sorted(load_cores) if load_cores else None,
            "proxy_cores": args.proxy_cores,
            "spread": args.spread,
            "client": args.client,
            "nice": args.nice,
        }

    # -- helpers -------------------------------------------------------------

    def channel(self, name: str) -> str:
        # A fresh channel per run: no stale Redis group members from earlier runs.
        return f"/default/bench-{self.run}/{name}"

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", file=sys.stderr, flush=True)

    def record(self, kind: str, scenario: str, result: dict[str, Any]) -> None:
        self.results.setdefault(kind, {})[scenario] = result

    def job(self, scenario: str, targets: list[srv.Server], **extra: Any) -> dict[str, Any]:
        return {
            "scenario": scenario,
            "targets": [s.target() for s in targets],
            "server_pids": [s.pid for s in targets],
            "client": self.args.client,
            "concurrency": self.sizes.concurrency,
            "timeout": self.sizes.timeout,
            "grace": self.sizes.grace,
            "server_cores": sorted(self.pool.server_cores or ()),
            **extra,
        }

    def loadgen_run(self, job: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return self.loadgen.run(job, timeout=float(job["timeout"]) + 30, **kwargs)

    # -- scenarios -------------------------------------------------------------

    def warmup(self, targets: list[srv.Server]) -> None:
        s = self.sizes
        job = self.job(
            "warmup",
            targets,
            channel=self.channel("warmup"),
            subscribers=s.warmup_subscribers,
            events=s.warmup_events,
        )
        self.loadgen_run(job)

    def memory(self, server: srv.Server) -> dict[str, Any]:
        # The server idles first: its own background work (timers, pollers) is a figure too.
        cpu_before = srv.cpu_seconds(server.pid)
        time.sleep(self.sizes.idle_window)
        idle_cpu = (srv.cpu_seconds(server.pid) - cpu_before) / self.sizes.idle_window
        before = srv.rss_kib(server.pid)
        measured: dict[str, Any] = {}

        def on_hold(info: dict[str, Any]) -> None:
            measured["after"] = srv.rss_kib(server.pid)
            measured["open"] = int(info["open"])

        n = self.sizes.memory_connections
        job = self.job("connect", [server], connections=n, hold=True, settle=self.sizes.settle)
        result = self.loadgen_run(job, on_hold=on_hold)
        opened = measured.get("open", 0)
        after = measured.get("after", before)
        result.update(
            {
                "idle_server_cpu": idle_cpu,
                "rss_before_kib": before,
                "rss_after_kib": after,
                "kib_per_connection": (after - before) / opened if opened else None,
            }
        )
        return result

    def connect(self, server: srv.Server) -> dict[str, Any]:
        job = self.job("connect", [server], connections=self.sizes.connect_connections)
        runs = [self.loadgen_run(job) for _ in range(max(1, self.args.repeat or self.sizes.repeat))]
        best = max(runs, key=lambda r: r.get("connects_per_s") or 0)
        if len(runs) > 1:
            best = dict(best)
            best["all_connects_per_s"] = [r.get("connects_per_s") for r in runs]
        return best

    def burst(self, targets: list[srv.Server], subscribers: int, events: int, name: str) -> dict[str, Any]:
        repeat = self.args.repeat or self.sizes.repeat
        runs = []
        for i in range(max(1, repeat)):
            job = self.job(
                "burst", targets, channel=self.channel(f"{name}{i}"), subscribers=subscribers, events=events
            )
            if self.args.profile:
                runs.append(self.profiled(job, targets, f"{name}{i}"))
            else:
                runs.append(self.loadgen_run(job))
        best = max(runs, key=lambda r: (r.get("delivered", 0), r.get("deliveries_per_s") or 0))
        if len(runs) > 1:
            best = dict(best)
            best["all_deliveries_per_s"] = [r.get("deliveries_per_s") for r in runs]
        return best

    def profiled(self, job: dict[str, Any], targets: list[srv.Server], name: str) -> dict[str, Any]:
        """Run a fan-out job with py-spy sampling every server from the first publish to the end."""
        profilers: list[srv.Profiler] = []

        def on_hold(info: dict[str, Any]) -> None:
            for n, server in enumerate(targets):
                path = Path(self.args.profile) / f"{self.run}-{server.kind.name}-{name}-{n}.txt"
                profilers.append(srv.Profiler.start(server.pid, path))
            time.sleep(0.5)  # py-spy attaches

        job["hold_before_publish"] = True
        try:
            return self.loadgen_run(job, on_hold=on_hold)
        finally:
            for profiler in profilers:
                profiler.stop()
                self.log(f"  profile: {profiler.path}")

    def steady(self, targets: list[srv.Server], subscribers: int, name: str) -> dict[str, Any]:
        s = self.sizes
        job = self.job(
            "steady",
            targets,
            channel=self.channel(name),
            subscribers=subscribers,
            rate=s.steady_rate,
            duration=s.steady_duration,
            drain=s.steady_drain,
        )
        if self.args.profile:
            return self.profiled(job, targets, name)
        return self.loadgen_run(job)

    def quiet(self) -> None:
        if self.args.wait_quiet > 0:
            share = srv.wait_quiet(self.args.wait_quiet, 0.10, self.log)
            self.meta.setdefault("busy_before_servers", []).append(round(share, 3))

    def attempt(self, kind: str, scenario: str, fn: Any, *args: Any) -> None:
        started = time.monotonic()
        self.log(f"  {scenario} ...")
        try:
            result = fn(*args)
        except Exception as exc:
            result = {"error": str(exc)[:3000]}
            self.log(f"  {scenario} FAILED: {str(exc)[:600]}")
        result["wall_s"] = round(time.monotonic() - started, 2)
        self.log(f"  {scenario} done in {result['wall_s']}s")
        self.record(kind, scenario, result)

    # -- the run ---------------------------------------------------------------

    def single_process(self, kind: srv.Kind) -> None:
        single = ("memory", "connect", "burst", "steady", "steady-5k")
        wanted = [s for s in single if s in self.args.scenarios]
        if not wanted:
            return
        self.quiet()
        self.log(f"{kind.name}: starting")
        server = self.pool.start(kind, site=self.site)
        try:
            self.log(f"{kind.name}: listening on {server.port} (pid {server.pid}); warming up")
            self.warmup([server])
            # Memory first, on a process that has only been warmed up.
            if "memory" in wanted:
                self.attempt(kind.name, "memory", self.memory, server)
            if "connect" in wanted:
                self.attempt(kind.name, "connect", self.connect, server)
            s = self.sizes
            if "burst" in wanted:
                self.attempt(
                    kind.name, "burst", self.burst, [server], s.burst_subscribers, s.burst_events, "burst"
                )
            if "steady" in wanted:
                self.attempt(kind.name, "steady", self.steady, [server], s.steady_subscribers, "steady")
            if "steady-5k" in wanted:
                self.attempt(
                    kind.name, "steady-5k", self.steady, [server], s.steady_large_subscribers, "steady5k"
                )
            if not server.alive():
                self.record(
                    kind.name,
                    "crashed",
                    {"error": f"server exited with {server.proc.returncode}", "log": server.log_tail()},
                )
        finally:
            self.pool.stop(server)

    def two_processes(self, kind: srv.Kind, redis_url: str) -> None:
        self.quiet()
        self.log(f"{kind.name} x2 + Redis: starting")
        servers = self.pool.start_many(kind, 2, site=self.site, redis_url=redis_url)
        try:
            for server in servers:
                self.warmup([server])
            s = self.sizes
            if "redis" in self.args.scenarios:
                self.attempt(
                    kind.name, "redis", self.burst, servers, s.redis_subscribers, s.redis_events, "redis"
                )
            if "redis-steady" in self.args.scenarios:
                self.attempt(
                    kind.name, "redis-steady", self.steady, servers, s.steady_subscribers, "redissteady"
                )
        finally:
            for server in servers:
                self.pool.stop(server)

    def execute(self) -> int:
        kinds = [srv.KINDS[name] for name in dict.fromkeys(self.args.servers)]
        self.meta["machine"] = srv.machine_facts()
        self.meta["versions"] = srv.versions(self.python)
        if self.args.profile:
            Path(self.args.profile).mkdir(parents=True, exist_ok=True)
        if any(k.role == "ours" for k in kinds):
            self.log("preparing our server: migrate a fresh SQLite database, create an API key")
            self.site = srv.OurSite.prepare(self.workdir, self.python, self.args.database_url)
        for kind in kinds:
            self.single_process(kind)
        scale = [s for s in SCALE_SCENARIOS if s in self.args.scenarios]
        ours = [k for k in kinds if k.role == "ours"]
        if scale and ours:
            Scale(self, ours[0]).run(scale)
            self.meta["scale_server"] = ours[0].name
        if {"redis", "redis-steady"} & set(self.args.scenarios):
            redis_kinds = [k for k in kinds if k.supports_redis]
            info = srv.redis_info(self.args.redis_url)
            if info is None:
                self.log(f"redis: no Redis at {self.args.redis_url}; the 2-process scenario is skipped")
                self.meta["redis"] = None
            else:
                self.meta["redis"] = {"url": self.args.redis_url, **info}
                for kind in redis_kinds:
                    self.two_processes(kind, self.args.redis_url)
                self.cleanup_redis()
        return 0

    def cleanup_redis(self) -> None:
        # Exactly the group keys this run created (our hub's and the reference's
        # derived names for this run's channels), never a pattern.
        import hashlib

        keys = []
        for i in range(max(1, self.args.repeat or self.sizes.repeat)):
            for name in ("warmup", f"redis{i}", "redissteady"):
                path = self.channel(name).lstrip("/")
                digest = hashlib.sha1(path.encode(), usedforsecurity=False).hexdigest()[:24]
                keys.append(f"asgi:group:rt.default.{digest}")
                ref = hashlib.sha1(("/" + path).encode(), usedforsecurity=False).hexdigest()[:24]
                keys.append(f"asgi:group:bench.{ref}")
        srv.redis_delete(self.args.redis_url, keys)

    def close(self) -> None:
        self.pool.stop_all()
        if self.args.keep:
            self.log(f"kept {self.workdir}")
        else:
            srv.remove_workdir(self.workdir)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bench = Bench(args)

    def on_term(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    started = time.monotonic()
    status = 0
    try:
        bench.execute()
    except KeyboardInterrupt:
        bench.log("interrupted")
        status = 130
    except Exception:
        traceback.print_exc()
        status = 1
    finally:
        bench.close()
    bench.meta["wall_s"] = round(time.monotonic() - started, 1)
    bench.meta["command"] = "python -m bench.fanout " + " ".join(sys.argv[1:] if argv is None else argv)
    goals = evaluate_goals(bench.results, bench.meta)
    print(render(bench.results, bench.meta, goals))
    failed = [
        f"{kind} {scenario}"
        for kind, scenarios in bench.results.items()
        for scenario, value in scenarios.items()
        if isinstance(value, dict) and value.get("error")
    ]
    if failed and status == 0:
        # A measurement that could not be taken fails the run (smoke tests rely on
        # this); a goal that is missed does not: goals are figures, not assertions.
        status = 2
    if args.json:
        with open(args.json, "w") as out:
            json.dump(
                {"meta": bench.meta, "results": bench.results, "goals": goals}, out, indent=2, default=str
            )
        bench.log(f"wrote {args.json}")
    return status
