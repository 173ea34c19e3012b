"""Starting, pinning, measuring and stopping the servers under test.

Each server runs as its own subprocess (own session, so it and anything it
spawns are stopped together), pinned to the server core(s), listening on a
free loopback port. Nothing here imports Django either: our server is prepared
with ``manage.py`` subprocesses (``migrate``, ``realtime_apikey create``) on a
temporary SQLite database, and every server is driven only over its socket.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
SUBPROTOCOL = "aws-appsync-event-ws"
WS_PATH = "/event/realtime"
CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(Exception):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    """The process's resident set size (``VmRSS``), in KiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise BenchError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_seconds_of(pids: list[int]) -> float:
    """The CPU seconds of these processes together; one that has exited counts nothing."""
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except (OSError, ValueError, IndexError):
            pass
    return total


def cpu_times() -> dict[int, tuple[float, float]]:
    """Per-CPU (busy, total) seconds since boot, from /proc/stat."""
    times: dict[int, tuple[float, float]] = {}
    try:
        with open("/proc/stat") as stat:
            for line in stat:
                name, *values = line.split()
                if not name.startswith("cpu") or name == "cpu":
                    continue
                ticks = [int(v) for v in values[:8]]
                idle = ticks[3] + ticks[4]  # idle + iowait
                total = sum(ticks)
                times[int(name[3:])] = ((total - idle) / CLK_TCK, total / CLK_TCK)
    except OSError:
        pass
    return times


def busy_share(
    before: dict[int, tuple[float, float]], after: dict[int, tuple[float, float]]
) -> dict[int, float]:
    """Busy fraction of each CPU between two :func:`cpu_times` readings."""
    shares = {}
    for cpu, (busy, total) in after.items():
        if cpu in before and total > before[cpu][1]:
            shares[cpu] = (busy - before[cpu][0]) / (total - before[cpu][1])
    return shares


def wait_quiet(max_wait: float, threshold: float, log: Callable[[str], None]) -> float:
    """Wait up to ``max_wait`` s for the machine to be below ``threshold`` busy; return the last share."""
    deadline = time.monotonic() + max_wait
    while True:
        before = cpu_times()
        time.sleep(2.0)
        shares = busy_share(before, cpu_times())
        share = sum(shares.values()) / max(1, len(shares))
        if share <= threshold or time.monotonic() >= deadline:
            return share
        log(f"machine {share:.0%} busy with other work; waiting for it to be quiet (< {threshold:.0%})")


def can_pin() -> bool:
    return hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) >= 2


def preexec(cores: set[int] | None, nice: int = 0) -> Callable[[], None]:
    """Run in the child before exec: pin it, set its priority and raise its file limit."""

    def setup() -> None:
        if cores:
            os.sched_setaffinity(0, cores)
        if nice:
            try:
                os.setpriority(os.PRIO_PROCESS, 0, nice)
            except OSError:
                pass
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            except (ValueError, OSError):
                pass

    return setup


def pin_process(pid: int, cores: set[int]) -> None:
    """Pin every thread of a running process (threads made later inherit the main thread's mask)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(tid), cores)
        except (ProcessLookupError, PermissionError):
            pass


def auth_subprotocols(api_key: str | None, host: str) -> list[str]:
    """``aws-appsync-event-ws`` plus the ``header-<base64url>`` credentials (PROTOCOL §3.1)."""
    if not api_key:
        return [SUBPROTOCOL]
    header = json.dumps({"host": host, "x-api-key": api_key}, separators=(",", ":"))
    encoded = base64.urlsafe_b64encode(header.encode()).decode().rstrip("=")
    return [SUBPROTOCOL, "header-" + encoded]


# ---------------------------------------------------------------------------
# Our server's database and key


@dataclass
class OurSite:
    """A fresh, migrated SQLite database and an API key for our server."""

    workdir: Path
    database_url: str
    api_key: str

    @classmethod
    def prepare(cls, workdir: Path, python: str, database_url: str = "") -> OurSite:
        # A temporary SQLite database unless told otherwise (several processes
        # writing joins want PostgreSQL).
        database_url = database_url or f"sqlite:///{workdir / 'bench.sqlite3'}"
        env = our_env(database_url)
        for args in (
            ["migrate", "--noinput", "-v", "0"],
            ["realtime_apikey", "create", "--description", "bench"],
        ):
            proc = subprocess.run(
                [python, str(PROJECT_ROOT / "manage.py"), *args],
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=180,
            )
            if proc.returncode != 0:
                raise BenchError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        lines = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        if not lines:
            raise BenchError("realtime_apikey create printed no key")
        return cls(workdir, database_url, lines[-1])


def our_env(database_url: str, redis_url: str = "") -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": database_url,
            "DEBUG": "false",
            "LOG_LEVEL": "WARNING",
            "SECRET_KEY": "realtime-bench-not-secret",
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    if redis_url:
        env["REDIS_URL"] = redis_url
    return env


# ---------------------------------------------------------------------------
# Server kinds


@dataclass(frozen=True)
class Kind:
    """One way of serving the protocol subset."""

    name: str
    label: str
    role: str  # "ours" | "reference" | "ceiling"
    needs_key: bool
    supports_redis: bool
    command: Callable[[str, int], list[str]]

    def env(self, site: OurSite | None, redis_url: str) -> dict[str, str]:
        if self.role == "ours":
            assert site is not None
            return our_env(site.database_url, redis_url)
        env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL"}}
        env.update({"PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"})
        if redis_url:
            env["BENCH_REFERENCE_REDIS_URL"] = redis_url
        return env


def _daphne(app: str) -> Callable[[str, int], list[str]]:
    return lambda python, port: [python, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0", app]


def _uvicorn(app: str, *extra: str) -> Callable[[str, int], list[str]]:
    return lambda python, port: [
        python,
        "-m",
        "uvicorn",
        app,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
        "--lifespan",
        "off",
        *extra,
    ]


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("ours-daphne", "ours/daphne", "ours", True, True, _daphne("config.asgi:application")),
        # uvicorn as realtime_serve runs it: the websockets-sansio protocol (SERVE_UVICORN_WS).
        Kind(
            "ours-uvicorn",
            "ours/uvicorn",
            "ours",
            True,
            True,
            _uvicorn("config.asgi:application", "--ws", "websockets-sansio"),
        ),
        # uvicorn's own default, the websockets library's legacy protocol.
        Kind(
            "ours-uvicorn-legacy",
            "ours/uvicorn-legacy",
            "ours",
            True,
            True,
            _uvicorn("config.asgi:application", "--ws", "websockets"),
        ),
        Kind(
            "ref-daphne",
            "tutorial/daphne",
            "reference",
            False,
            True,
            _daphne("bench.fanout.reference_app:application"),
        ),
        Kind(
            "ref-uvicorn",
            "tutorial/uvicorn",
            "reference",
            False,
            True,
            _uvicorn("bench.fanout.reference_app:application"),
        ),
        Kind(
            "ceiling",
            "websockets",
            "ceiling",
            False,
            False,
            lambda python, port: [python, "-m", "bench.fanout.ceiling", "--port", str(port)],
        ),
    )
}


# ---------------------------------------------------------------------------
# Running servers


@dataclass
class Server:
    kind: Kind
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    api_key: str | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def target(self) -> dict[str, Any]:
        host = f"127.0.0.1:{self.port}"
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "path": WS_PATH,
            "subprotocols": auth_subprotocols(self.api_key, host),
        }

    def target_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc.poll() is None


@dataclass
class ServerPool:
    """Every process the benchmark started; stopped on exit, whatever happens."""

    python: str
    workdir: Path
    server_cores: set[int] | None
    nice: int = 0
    servers: list[Server] = field(default_factory=list)
    # Each server process on a core of its own (round robin over the usable CPUs).
    spread: bool = False

    def start(
        self,
        kind: Kind,
        *,
        site: OurSite | None,
        redis_url: str = "",
        ready_timeout: float = 60.0,
        env: dict[str, str] | None = None,
    ) -> Server:
        return self.start_many(kind, 1, site=site, redis_url=redis_url, ready_timeout=ready_timeout, env=env)[
            0
        ]

    def start_many(
        self,
        kind: Kind,
        count: int,
        *,
        site: OurSite | None,
        redis_url: str = "",
        ready_timeout: float = 60.0,
        env: dict[str, str] | None = None,
        pin: bool = True,
    ) -> list[Server]:
        """Start ``count`` processes of ``kind`` at once; return when all listen.

        ``env`` adds to (or overrides) the kind's environment, e.g. the quiz's join rates.
        """
        # Processes start on every core (imports are the slow part), and are
        # pinned to the server core(s) once they listen, before any measurement.
        started = [self._spawn(kind, site, redis_url, env or {}) for _ in range(count)]
        deadline = time.monotonic() + ready_timeout
        for server in started:
            self._wait_listening(server, deadline, ready_timeout)
        if self.spread and pin:
            cpus = sorted(os.sched_getaffinity(0))
            for index, server in enumerate(started):
                pin_process(server.pid, {cpus[index % len(cpus)]})
        elif self.server_cores and pin:
            for server in started:
                pin_process(server.pid, self.server_cores)
        return started

    def _spawn(self, kind: Kind, site: OurSite | None, redis_url: str, env: dict[str, str]) -> Server:
        port = free_port()
        log_path = self.workdir / f"{kind.name}-{port}.log"
        log = open(log_path, "wb")
        proc = subprocess.Popen(
            kind.command(self.python, port),
            cwd=PROJECT_ROOT,
            env={**kind.env(site, redis_url), **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=preexec(None, self.nice),
            start_new_session=True,
        )
        log.close()
        server = Server(kind, port, proc, log_path, site.api_key if kind.needs_key and site else None)
        self.servers.append(server)
        return server

    def _wait_listening(self, server: Server, deadline: float, ready_timeout: float) -> None:
        kind, port = server.kind, server.port
        while True:
            if not server.alive():
                raise BenchError(f"{kind.name} exited with {server.proc.returncode}:\n{server.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop(server)
                    raise BenchError(
                        f"{kind.name} did not listen on {port} within {ready_timeout:.0f}s"
                    ) from None
                time.sleep(0.05)

    def stop(self, server: Server, timeout: float = 5.0) -> None:
        proc = server.proc
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout)
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for server in list(self.servers):
            try:
                self.stop(server)
            except Exception:
                pass


# ---------------------------------------------------------------------------
# The load generator process


@dataclass
class LoadGen:
    python: str
    cores: set[int] | None
    nice: int = 0

    def run(
        self,
        job: dict[str, Any],
        *,
        timeout: float,
        on_hold: Callable[[dict[str, Any]], None] | None = None,
        module: str = "bench.fanout.loadgen",
        env: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run one job in a fresh load-generator process; returns its result dict.

        ``module`` speaks the load generator's JSON-lines protocol (``bench.fanout.joins``
        does too, with Django set up from ``env``).
        """
        proc = subprocess.Popen(
            [self.python, "-m", module],
            cwd=PROJECT_ROOT,
            env=env or {**os.environ, "PYTHONPATH": str(PROJECT_ROOT), "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec(self.cores, self.nice),
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        import threading

        timed_out = threading.Event()

        def kill() -> None:
            timed_out.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            proc.stdin.write(json.dumps(job) + "\n")
            proc.stdin.flush()
            final: dict[str, Any] | None = None
            for line in proc.stdout:
                message = json.loads(line)
                if "hold" in message:
                    if on_hold is not None:
                        on_hold(message["hold"])
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                else:
                    final = message
                    break
            proc.wait(10)
        finally:
            timer.cancel()
            if proc.poll() is None:
                kill()
                proc.wait()
        stderr = proc.stderr.read() if proc.stderr else ""
        if timed_out.is_set():
            raise BenchError(f"load generator timed out after {timeout:.0f}s; stderr tail:\n{stderr[-2000:]}")
        if final is None:
            raise BenchError(f"load generator died (rc={proc.returncode}); stderr tail:\n{stderr[-2000:]}")
        if "error" in final:
            raise BenchError(f"load generator: {final['error']}; stderr tail:\n{stderr[-1000:]}")
        return final["result"]


@dataclass
class Profiler:
    """``py-spy record`` attached to one server process, writing collapsed stacks."""

    proc: subprocess.Popen[bytes]
    path: Path

    @classmethod
    def start(cls, pid: int, path: Path, rate: int = 250) -> Profiler:
        exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(exe).exists():
            raise BenchError("--profile needs py-spy (pip install py-spy)")
        proc = subprocess.Popen(
            [
                exe,
                "record",
                "--pid",
                str(pid),
                "--rate",
                str(rate),
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return cls(proc, path)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="realtime-bench-"))


def remove_workdir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def default_python() -> str:
    return sys.executable


def cores_for(split: bool) -> tuple[set[int] | None, set[int] | None]:
    """(server cores, load-generator cores): the first CPU for servers, the rest for load."""
    if not split or not can_pin():
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    return {cpus[0]}, set(cpus[1:])


def versions(python: str) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, platform\n"
        "names = ['Django','channels','channels_redis','daphne','Twisted','autobahn','uvicorn',"
        "'uvloop','httptools','websockets','redis']\n"
        "out = {}\n"
        "for n in names:\n"
        "    try: out[n] = m.version(n)\n"
        "    except Exception: out[n] = 'not installed'\n"
        "out['python'] = platform.python_version()\n"
        "print(json.dumps(out))\n"
    )
    proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {"nproc": os.cpu_count()}
    if hasattr(os, "sched_getaffinity"):
        facts["usable_cpus"] = len(os.sched_getaffinity(0))
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    facts["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        facts["loadavg_at_start"] = os.getloadavg()
    except OSError:
        pass
    import platform

    facts["kernel"] = platform.release()
    return facts


def redis_info(url: str) -> dict[str, Any] | None:
    """The Redis server's version, or ``None`` if it does not answer."""
    try:
        import redis
    except ImportError:
        return None
    try:
        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        info = client.info("server")
        client.close()
        return {"redis_version": info.get("redis_version")}
    except Exception:
        return None


def redis_delete(url: str, keys: Sequence[str]) -> None:
    """Delete exactly the named keys (the benchmark's own groups); nothing else."""
    if not keys:
        return
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        client.delete(*keys)
        client.close()
    except Exception:
        pass
