"""The server under test: a daphne started on a fresh database, or one already running.

Nothing here imports Django: the server is prepared with ``manage.py`` subprocesses (``migrate``,
``realtime_apikey create``) and measured from ``/proc``.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
WS_PATH = "/event/realtime"
CLK_TCK = os.sysconf("SC_CLK_TCK")


class SetupError(Exception):
    """The run could not start (exit status 2)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SetupError(f"no VmRSS for pid {pid}")


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def listener_pid(port: int) -> int | None:
    """The process listening on a local TCP port, from /proc (own processes only, unless root)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as rows:
                next(rows)
                for row in rows:
                    cols = row.split()
                    if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(f"socket:[{cols[9]}]")
        except OSError:
            continue
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


@dataclass
class Server:
    host: str
    port: int
    api_key: str
    pid: int | None
    process: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None

    @property
    def log_path(self) -> Path | None:
        return None if self.workdir is None else self.workdir / "daphne.log"

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def alive(self) -> bool:
        return self.process is None or self.process.poll() is None

    def stop(self, keep_files: bool = False) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        if self.workdir is not None and not keep_files:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise SetupError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


def start_server(settings: str, pin: bool) -> Server:
    """A daphne on a fresh SQLite database (production settings, ``DEBUG=0``), on a free port."""
    workdir = Path(tempfile.mkdtemp(prefix="realtime-soak-"))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        DJANGO_SETTINGS_MODULE=settings,
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        DEBUG="0",
        ALLOWED_HOSTS="*",
        PYTHONUNBUFFERED="1",
    )
    server = Server("127.0.0.1", free_port(), "", None, workdir=workdir)
    try:
        _manage(env, "migrate", "--no-input", "-v", "0")
        server.api_key = (
            _manage(env, "realtime_apikey", "create", "--description", "soak").strip().splitlines()[-1]
        )
        with (workdir / "daphne.log").open("wb") as log:
            server.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-e",
                    f"tcp:{server.port}:interface=127.0.0.1",
                    "config.asgi:application",
                ],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        server.pid = server.process.pid
        deadline = time.monotonic() + 30
        while True:
            if not server.alive():
                raise SetupError(f"daphne exited:\n{server.log_tail()}")
            with socket.socket() as probe:
                if probe.connect_ex((server.host, server.port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise SetupError(f"daphne did not listen within 30 s:\n{server.log_tail()}")
            time.sleep(0.05)
        cpus = sorted(os.sched_getaffinity(0))
        if pin and len(cpus) >= 2:
            # The server on one core, this load generator on the others: neither starves the other.
            os.sched_setaffinity(server.pid, {cpus[0]})
            os.sched_setaffinity(0, set(cpus[1:]))
    except BaseException:
        server.stop(keep_files=False)
        raise
    return server


def external_server(url: str, api_key: str, pid: int | None) -> Server:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme != "ws" or not parsed.hostname or parsed.path not in ("", WS_PATH):
        raise SetupError(f"--url must be ws://<loopback host>:<port>{WS_PATH}, not {url!r}")
    try:
        loopback = ipaddress.ip_address(socket.gethostbyname(parsed.hostname)).is_loopback
    except (OSError, ValueError):
        loopback = False
    if not loopback:
        raise SetupError("the soak test runs against loopback servers only")
    port = parsed.port or 80
    pid = pid or listener_pid(port)
    if pid is None:
        raise SetupError("cannot find the server's process; pass --server-pid")
    return Server(parsed.hostname, port, api_key, pid)
