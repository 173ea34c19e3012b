"""What stands around the servers in a scaled-out run: nginx in front, a Redis of the run's own.

Both are started unprivileged-style on free loopback ports from a temporary
directory and stopped with the run. nginx runs the configuration users deploy
(deploy/nginx, rendered by :func:`bench.nginx.render` with an upstream over the
server processes' ports), so its cost is the deployed proxy's; the private
``redis-server`` keeps the command counts of ``INFO commandstats`` to this run
alone (the machine's shared Redis counts every other user's commands too).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.nginx import render as render_nginx

from .servers import BenchError, cpu_seconds, free_port, pin_process, preexec


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            return [int(p) for p in children.read().split()]
    except OSError:
        return []


def _wait_port(port: int, proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
            raise BenchError(f"{what} exited with {proc.returncode}:\n{tail}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{what} did not listen on {port} within {timeout:.0f}s") from None
            time.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        return
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


@dataclass
class Nginx:
    """An nginx master and its worker(s) in front of ``upstream_ports``."""

    proc: subprocess.Popen[bytes]
    port: int
    directory: Path

    @classmethod
    def start(cls, workdir: Path, upstream_ports: list[int], cores: set[int] | None, nice: int = 0) -> Nginx:
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(exe).exists():
            raise BenchError("nginx is not installed (Debian: apt-get install nginx-light or nginx)")
        directory = workdir / f"nginx-{free_port()}"
        port = free_port()
        conf = render_nginx(directory, upstream_ports=upstream_ports, http_port=port)
        log = directory / "error.log"
        proc = subprocess.Popen(
            [exe, "-c", str(conf), "-p", str(directory), "-e", str(log)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "stderr.log", "wb"),
            preexec_fn=preexec(None, nice),
            start_new_session=True,
        )
        proxy = cls(proc, port, directory)
        try:
            _wait_port(port, proc, "nginx", directory / "stderr.log")
        except BenchError:
            proxy.stop()
            raise
        if cores:
            for pid in proxy.pids():
                pin_process(pid, cores)
        return proxy

    def pids(self) -> list[int]:
        return [self.proc.pid, *_children(self.proc.pid)]

    def cpu_seconds(self) -> float:
        return sum(cpu_seconds(pid) for pid in self.pids())

    def stop(self) -> None:
        _stop(self.proc, signal.SIGQUIT)  # graceful: workers finish, then exit


@dataclass
class PrivateRedis:
    """A ``redis-server`` of the run's own: no persistence, loopback, a free port."""

    proc: subprocess.Popen[bytes]
    port: int

    @classmethod
    def start(cls, workdir: Path, nice: int = 0) -> PrivateRedis:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(exe).exists():
            raise BenchError("redis-server is not installed (Debian: apt-get install redis-server)")
        port = free_port()
        log = workdir / f"redis-{port}.log"
        proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(workdir),
                "--logfile",
                str(log),
                "--maxclients",
                "10000",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=preexec(None, nice),
            start_new_session=True,
        )
        redis = cls(proc, port)
        try:
            _wait_port(port, proc, "redis-server", log)
        except BenchError:
            redis.stop()
            raise
        return redis

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        _stop(self.proc)


def redis_counters(url: str) -> dict[str, Any]:
    """Calls per command (``INFO commandstats``), the server's CPU seconds and pub/sub messages."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
    try:
        stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
        cpu: dict[str, Any] = client.info("cpu")  # type: ignore[assignment]
        server_stats: dict[str, Any] = client.info("stats")  # type: ignore[assignment]
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}
    return {
        "calls": calls,
        "cpu_s": float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        "net_input_bytes": int(server_stats.get("total_net_input_bytes", 0)),
        "net_output_bytes": int(server_stats.get("total_net_output_bytes", 0)),
    }


def redis_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    # INFO itself is counted: the reads of these counters are left out.
    calls = {
        name: n - before["calls"].get(name, 0)
        for name, n in after["calls"].items()
        if name != "info" and n - before["calls"].get(name, 0) > 0
    }
    return {
        "calls": dict(sorted(calls.items(), key=lambda item: -item[1])),
        "total_calls": sum(calls.values()),
        "cpu_s": after["cpu_s"] - before["cpu_s"],
        "net_input_bytes": after["net_input_bytes"] - before["net_input_bytes"],
        "net_output_bytes": after["net_output_bytes"] - before["net_output_bytes"],
    }
