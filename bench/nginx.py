"""nginx from deploy/nginx, rendered into a directory of its own: no root, no system configuration.

The one renderer of a proxy in front of the site: ``python -m bench.restart``, the scale-out
scenarios of ``python -m bench.fanout`` (:mod:`bench.fanout.infra` runs the process) and
``tests/e2e/test_proxy.py`` all measure and test the configuration users deploy.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

DEPLOY = Path(__file__).resolve().parents[1] / "deploy" / "nginx"
# The upstream address deploy/nginx/realtime-upstream.conf names, replaced by the site's.
SHIPPED_UPSTREAM = "server 127.0.0.1:8000"
START_TIMEOUT = 10.0
# Each proxied WebSocket holds two descriptors (client and upstream); the hard file limit of
# this machine may be as low as 20,000, which 20,000 idle connections over the proxy must fit.
WORKER_CONNECTIONS = 18_000
WORKER_NOFILE = 19_000


class NginxError(RuntimeError):
    pass


def executable() -> str | None:
    found = shutil.which("nginx")
    if found is None and Path("/usr/sbin/nginx").exists():
        found = "/usr/sbin/nginx"
    return found


@dataclass
class Nginx:
    http_port: int
    tls_port: int | None
    directory: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def render(
    directory: Path,
    *,
    upstream_ports: Sequence[int],
    http_port: int,
    tls_port: int | None = None,
    tls: tuple[Path, Path] | None = None,
    workers: int = 1,
) -> Path:
    """deploy/nginx's upstream and locations in a configuration of their own; returns its path.

    The shipped upstream's one server becomes one per port of ``upstream_ports``, with the
    same parameters: a site on one shared socket names one port, servers on ports of their
    own (the benchmark's) several.
    """
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (directory / name).mkdir(parents=True, exist_ok=True)
    upstream = (DEPLOY / "realtime-upstream.conf").read_text()
    shipped = re.search(rf"^(\s*){re.escape(SHIPPED_UPSTREAM)}(\b[^\n]*)$", upstream, re.MULTILINE)
    if shipped is None:
        raise NginxError(f"deploy/nginx/realtime-upstream.conf has no {SHIPPED_UPSTREAM!r} to replace")
    indent, parameters = shipped.groups()
    servers = "\n".join(f"{indent}server 127.0.0.1:{port}{parameters}" for port in upstream_ports)
    (directory / "realtime-upstream.conf").write_text(
        upstream[: shipped.start()] + servers + upstream[shipped.end() :]
    )
    locations = DEPLOY / "realtime-locations.conf"
    tls_server = ""
    if tls_port is not None and tls is not None:
        key_file, cert_file = tls
        tls_server = f"""
    server {{
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert_file};
        ssl_certificate_key {key_file};
        include {locations};
    }}"""
    # Under root, nginx would run its workers as `nobody`, who may not read this directory.
    user = "user root;\n" if os.geteuid() == 0 else ""
    config = directory / "nginx.conf"
    config.write_text(
        f"""{user}worker_processes {workers};
worker_rlimit_nofile {WORKER_NOFILE};
daemon off;
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{ worker_connections {WORKER_CONNECTIONS}; }}
http {{
    access_log off;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    include {directory}/realtime-upstream.conf;
    server {{
        listen 127.0.0.1:{http_port} backlog=4096;
        include {locations};
    }}{tls_server}
}}
"""
    )
    return config


def start_nginx(
    workdir: Path,
    upstream_port: int,
    *,
    tls: tuple[Path, Path] | None = None,
    prefix: list[str] | None = None,
) -> Nginx:
    """nginx on free loopback ports (HTTP, and TLS when ``tls`` is given), proxying to ``upstream_port``."""
    binary = executable()
    if binary is None:
        raise NginxError("nginx is not installed (bin/setup installs it as root on Debian)")
    for attempt in range(3):
        directory = workdir / f"nginx-{attempt}"
        http_port = free_port()
        tls_port = free_port() if tls is not None else None
        config = render(
            directory, upstream_ports=[upstream_port], http_port=http_port, tls_port=tls_port, tls=tls
        )
        process = subprocess.Popen(
            [
                *(prefix or []),
                binary,
                "-p",
                str(directory),
                "-c",
                str(config),
                "-e",
                str(directory / "error.log"),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and process.poll() is None:
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", http_port), timeout=0.5),
            ):
                return Nginx(http_port, tls_port, directory, process)
            time.sleep(0.05)
        nginx = Nginx(http_port, tls_port, directory, process)
        nginx.stop()
        error_log = (directory / "error.log").read_text(errors="replace")
        if "Address already in use" not in error_log:
            raise NginxError(f"nginx did not start:\n{error_log}")
    raise NginxError("nginx could not bind a port")
