"""Real server processes for the end-to-end tests.

Fixtures (all reusable by any test under ``tests/e2e``):

- ``daphne_server``: a plain (``http://`` / ``ws://``) daphne.
- ``daphne_tls_server``: the same application over TLS (``https://`` / ``wss://``), with a
  self-signed certificate for ``127.0.0.1`` and ``localhost`` issued by a throwaway ``trustme``
  CA (``server.ca_file``; point ``NODE_EXTRA_CA_CERTS`` at it, or use ``server.ssl_context()``).
- ``start_tls_daphne``: a factory for more TLS daphnes with another settings module (and extra
  environment), e.g. ``start_tls_daphne("tests.e2e.settings_tokens", env={...})``; started once
  per distinct arguments, on the same database, stopped at the end of the session.
- ``start_variant``: a factory for the same application served another way, by name
  (:data:`VARIANTS`): daphne and uvicorn (its ``websockets-sansio`` protocol, as ``realtime_serve``
  runs it, and its default legacy ``websockets`` one), each writing frames straight to its transport (the
  default) or through ASGI ``send`` (``REALTIME_DIRECT_WRITES=0``), and daphne with its own
  WebSocket protocol (``SERVER_TUNING=0``); one process per name and
  settings module, on the same database, stopped at the end of the session.

Each server is started once per session, lazily, on a free port, with ``config.settings.base``
(``DEBUG=0``, ``ALLOWED_HOSTS=*``). Both share one fresh SQLite database in a temporary directory:
``manage.py migrate`` and ``manage.py realtime_apikey create`` run once, while the first daphne
boots, so ``server.api_key`` is the same key on both. The server's stdout and stderr go to
``server.log_path``. The function-scoped fixtures check before and after every test that the
process is still alive and that the test added no ``Traceback`` to the server log; either failure
shows the log.

``e2e_staff_login``: a staff superuser on that database (``.username``, ``.password``), for pages
behind the admin's login form.

Per test (``test_multiprocess.py``):

- ``redis_server``: a private ``redis-server`` on a free loopback port, without persistence;
  ``stop()`` / ``start()`` restart it empty on the same port.
- ``daphne_factory``: starts extra plain daphne processes with extra environment (``REDIS_URL``,
  ``DJANGO_SETTINGS_MODULE``) on the shared database and key; stopped and checked for early
  exit and ``Traceback`` at teardown.
- ``manage_command``: starts the long-running commands that run beside scaled-out servers
  (``realtime_relay``, ``quiz_worker``) with extra environment; stopped with ``SIGTERM`` and
  checked for ``Traceback`` at teardown. With ``REDIS_URL`` the servers leave publishing on
  commit to ``realtime_relay`` (and scoring to ``quiz_worker``): start one wherever the other is.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme

REPO_ROOT = Path(__file__).resolve().parents[2]
ASGI_APPLICATION = "config.asgi:application"
STARTUP_TIMEOUT = 30.0
SHUTDOWN_TIMEOUT = 10.0
MANAGE_TIMEOUT = 60.0
# Binding a probed free port can race with another process: try a few ports.
START_ATTEMPTS = 3
# Every server's /metrics answers this bearer token (staff users need none).
METRICS_TOKEN = "e2e-metrics-token"
# How the application may be served: (server, extra environment). Frames go straight to the
# server's transport unless REALTIME_DIRECT_WRITES=0 sends each through ASGI `send`.
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "daphne": ("daphne", {}),
    "daphne-asgi-send": ("daphne", {"REALTIME_DIRECT_WRITES": "0"}),
    # daphne's own WebSocket protocol, without realtime.transport.server_tuning.
    "daphne-stock": ("daphne", {"SERVER_TUNING": "0"}),
    # uvicorn as realtime_serve runs it: its websockets-sansio protocol.
    "uvicorn": ("uvicorn", {}),
    "uvicorn-asgi-send": ("uvicorn", {"REALTIME_DIRECT_WRITES": "0"}),
    # uvicorn's own default, the websockets library's legacy protocol.
    "uvicorn-legacy": ("uvicorn-legacy", {}),
}
# The writer each variant's connections report in realtime_connection_writer_total.
VARIANT_WRITERS = {
    "daphne": "daphne",
    "daphne-asgi-send": "asgi",
    "daphne-stock": "daphne",
    "uvicorn": "uvicorn-websockets-sansio",
    "uvicorn-asgi-send": "asgi",
    "uvicorn-legacy": "uvicorn-websockets",
}
# uvicorn's --ws protocol by server name.
UVICORN_PROTOCOLS = {"uvicorn": "websockets-sansio", "uvicorn-legacy": "websockets"}


def _python() -> str:
    venv_python = REPO_ROOT / ".venv" / "bin" / "python"
    return str(venv_python) if venv_python.exists() else sys.executable


def _server_env(database_path: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        # Never inherit the test settings or a Redis layer from the developer's shell.
        if key not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL", "DATABASE_URL"}
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "config.settings.base",
            "DATABASE_URL": f"sqlite:///{database_path}",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "*",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "METRICS_TOKEN": METRICS_TOKEN,
        }
    )
    return env


def database_of_its_own(env: Mapping[str, str], path: Path) -> str:
    """A ``DATABASE_URL`` for a copy of the session's database (migrated, holding the API key).

    On the in-memory channel layer each server relays and scores in its own
    process; servers that share one database would take each other's answers
    and pending frames, and deliver them to nobody. A test that needs every
    event of a game gives its server a database of its own.
    """
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as source:
        with sqlite3.connect(path) as copy:
            source.backup(copy)
    return f"sqlite:///{path}"


def _manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [_python(), "manage.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=MANAGE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"manage.py {' '.join(args)} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class DaphneServer:
    """One running daphne process and how to reach it."""

    scheme: str  # "http" or "https"
    port: int
    api_key: str
    log_path: Path
    ca_file: Path | None
    process: subprocess.Popen[bytes] = field(repr=False)

    host: str = "127.0.0.1"

    @property
    def authority(self) -> str:
        """``host:port``: what clients send as ``Host`` and in the ``host`` auth field."""
        return f"{self.host}:{self.port}"

    @property
    def http_url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"{self.scheme}://{self.authority}"

    @property
    def event_url(self) -> str:
        """``POST`` here to publish; also Amplify's ``API.Events.endpoint``."""
        return f"{self.http_url}/event"

    @property
    def ws_url(self) -> str:
        ws_scheme = "wss" if self.scheme == "https" else "ws"
        return f"{ws_scheme}://{self.authority}/event/realtime"

    @property
    def is_tls(self) -> bool:
        return self.scheme == "https"

    def ssl_context(self) -> ssl.SSLContext | None:
        """A client context that trusts this server's CA; ``None`` for the plain server."""
        if self.ca_file is None:
            return None
        return ssl.create_default_context(cafile=str(self.ca_file))

    # -- the log ---------------------------------------------------------------

    def log_size(self) -> int:
        """An offset into the log, to read only what a test added (:meth:`log_text`)."""
        return self.log_path.stat().st_size

    def log_text(self, since: int = 0) -> str:
        with self.log_path.open("rb") as log:
            log.seek(since)
            return log.read().decode("utf-8", errors="replace")

    def assert_no_traceback(self, since: int = 0) -> None:
        text = self.log_text(since)
        if "Traceback" in text:
            pytest.fail(f"the server logged a Traceback:\n{text}", pytrace=False)

    # -- the process -----------------------------------------------------------

    def assert_alive(self) -> None:
        code = self.process.poll()
        if code is not None:
            pytest.fail(
                f"daphne ({self.http_url}) exited with code {code}; its log:\n{self.log_text()}",
                pytrace=False,
            )

    def stop(self) -> int:
        return _terminate(self.process)


def _terminate(process: subprocess.Popen[bytes]) -> int:
    """``SIGTERM``, then ``SIGKILL`` if the process is still there after ``SHUTDOWN_TIMEOUT``."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=SHUTDOWN_TIMEOUT)
    return process.returncode


def _wait_until_listening(server: DaphneServer) -> None:
    """Poll the port until daphne accepts, bounded; fail with the log if it exits."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while True:
        server.assert_alive()
        try:
            with socket.create_connection((server.host, server.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            log = server.log_text()
            server.stop()
            pytest.fail(
                f"daphne did not listen on {server.authority} within {STARTUP_TIMEOUT}s; its log:\n{log}",
                pytrace=False,
            )
        time.sleep(0.05)


def _start_daphne(
    *,
    workdir: Path,
    name: str,
    env: dict[str, str],
    tls: tuple[Path, Path, Path] | None,
    api_key: Callable[[], str],
    server_name: str = "daphne",
) -> DaphneServer:
    """Start daphne (or uvicorn: ``server_name`` in :data:`UVICORN_PROTOCOLS`).

    ``tls`` is ``(private key, certificate chain, CA)``.

    ``api_key()`` prepares the database and returns the key: it runs while daphne boots
    (the server touches the database only when a request arrives).
    """
    last_log = ""
    for attempt in range(START_ATTEMPTS):
        port = _free_port()
        if tls is None:
            endpoint = f"tcp:{port}:interface=127.0.0.1"
        else:
            key_file, cert_file, _ = tls
            endpoint = f"ssl:{port}:interface=127.0.0.1:privateKey={key_file}:certKey={cert_file}"
        log_path = workdir / f"{name}-{attempt}.log"
        argv = [_python(), "-m", "daphne", "-e", endpoint, ASGI_APPLICATION]
        if server_name in UVICORN_PROTOCOLS:
            assert tls is None, "uvicorn is served without TLS here"
            argv = [_python(), "-m", "uvicorn", ASGI_APPLICATION, "--host", "127.0.0.1", "--port", str(port)]
            argv += ["--lifespan", "off", "--log-level", "warning", "--no-access-log"]
            argv += ["--ws", UVICORN_PROTOCOLS[server_name]]
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            key = api_key()
        except BaseException:
            process.kill()
            process.wait(timeout=SHUTDOWN_TIMEOUT)
            raise
        server = DaphneServer(
            scheme="http" if tls is None else "https",
            port=port,
            api_key=key,
            log_path=log_path,
            ca_file=None if tls is None else tls[2],
            process=process,
        )
        try:
            _wait_until_listening(server)
        except pytest.fail.Exception:
            last_log = server.log_text()
            server.stop()
            if "Address already in use" in last_log and attempt + 1 < START_ATTEMPTS:
                continue
            raise
        return server
    pytest.fail(f"daphne could not bind a port; last log:\n{last_log}", pytrace=False)


@pytest.fixture(scope="session")
def e2e_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def e2e_env(e2e_workdir: Path) -> dict[str, str]:
    """The servers' environment: production settings on a fresh SQLite file in a temp dir."""
    return _server_env(e2e_workdir / "db.sqlite3")


def enable_history(env: dict[str, str], namespace: str, size: int) -> None:
    """Make (or update) ``namespace`` with ``history_size`` publications kept (PROTOCOL §12)."""
    _manage(
        env,
        "shell",
        "-c",
        "from realtime.models import Namespace; "
        f"Namespace.objects.update_or_create(name={namespace!r}, defaults={{'history_size': {size}}})",
    )


@pytest.fixture(scope="session")
def e2e_api_key(e2e_env: dict[str, str]) -> str:
    """Migrates the fresh database (once, for both servers) and creates one API key."""
    _manage(e2e_env, "migrate", "--no-input", "-v", "0")
    output = _manage(e2e_env, "realtime_apikey", "create", "--description", "e2e")
    lines = output.strip().splitlines()
    assert lines, "realtime_apikey create printed nothing"
    api_key = lines[-1].strip()
    assert api_key and " " not in api_key, f"unexpected key line {api_key!r}"
    return api_key


@dataclass(frozen=True)
class StaffLogin:
    """A staff user on the shared database, for the admin's login form."""

    username: str
    password: str


@pytest.fixture(scope="session")
def e2e_staff_login(e2e_env: dict[str, str], e2e_api_key: str) -> StaffLogin:
    """Creates a staff superuser (once, after the migration) and returns how to sign in."""
    login = StaffLogin("e2e-staff", secrets.token_urlsafe(16))
    env = {**e2e_env, "DJANGO_SUPERUSER_PASSWORD": login.password}
    _manage(env, "createsuperuser", "--noinput", "--username", login.username, "--email", "staff@example.com")
    return login


@pytest.fixture(scope="session")
def tls_files(e2e_workdir: Path) -> tuple[Path, Path, Path]:
    """``(private key, certificate chain, CA certificate)`` for 127.0.0.1 and localhost."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    key_file = e2e_workdir / "server-key.pem"
    cert_file = e2e_workdir / "server-cert.pem"
    ca_file = e2e_workdir / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert_file.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    return key_file, cert_file, ca_file


def _server_fixture(
    request: pytest.FixtureRequest, name: str, tls: tuple[Path, Path, Path] | None
) -> Iterator[DaphneServer]:
    server = _start_daphne(
        workdir=request.getfixturevalue("e2e_workdir"),
        name=name,
        env=request.getfixturevalue("e2e_env"),
        tls=tls,
        api_key=lambda: request.getfixturevalue("e2e_api_key"),
    )
    try:
        yield server
    finally:
        died = server.process.poll()
        server.stop()
    if died is not None:
        pytest.fail(f"daphne exited early with code {died}; its log:\n{server.log_text()}", pytrace=False)


@pytest.fixture(scope="session")
def daphne_server_session(request: pytest.FixtureRequest) -> Iterator[DaphneServer]:
    yield from _server_fixture(request, "plain", None)


@pytest.fixture(scope="session")
def daphne_tls_server_session(
    request: pytest.FixtureRequest, tls_files: tuple[Path, Path, Path]
) -> Iterator[DaphneServer]:
    yield from _server_fixture(request, "tls", tls_files)


def _checked(server: DaphneServer) -> Iterator[DaphneServer]:
    server.assert_alive()
    start = server.log_size()
    yield server
    server.assert_alive()
    server.assert_no_traceback(since=start)


@pytest.fixture
def daphne_server(daphne_server_session: DaphneServer) -> Iterator[DaphneServer]:
    """The plain server; fails the test if daphne died or logged a Traceback meanwhile."""
    yield from _checked(daphne_server_session)


@pytest.fixture
def daphne_tls_server(daphne_tls_server_session: DaphneServer) -> Iterator[DaphneServer]:
    """The TLS server; fails the test if daphne died or logged a Traceback meanwhile."""
    yield from _checked(daphne_tls_server_session)


@pytest.fixture(scope="session")
def node_executable() -> str:
    """Path to ``node``; skips the test when Node.js is not installed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    return node


# -- Redis and extra servers that one test starts for itself ----------------------------------------

REDIS_STARTUP_TIMEOUT = 10.0
# Unique log names for processes started per test.
_instance_numbers = itertools.count(1)


@dataclass
class RedisServer:
    """A private ``redis-server`` on a loopback port: no persistence, so a restart forgets everything.

    :meth:`stop` and :meth:`start` again restart it on the same port (an outage, then an empty Redis).
    """

    port: int
    log_path: Path
    executable: str
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def ping(self) -> bool:
        """``PING`` answered with ``PONG`` (raw RESP: no client library involved)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def start(self) -> None:
        """Start (or restart) on :attr:`port`; returns once it answers ``PING``."""
        assert self.process is None or self.process.poll() is not None, "redis-server is running"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    self.host,
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + REDIS_STARTUP_TIMEOUT
        while not self.ping():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(
                    f"redis-server did not answer on port {self.port}; its log:\n"
                    + self.log_path.read_text(errors="replace"),
                    pytrace=False,
                )
            time.sleep(0.02)

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL); a no-op when it is not running."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=SHUTDOWN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=SHUTDOWN_TIMEOUT)


@pytest.fixture
def redis_server(e2e_workdir: Path) -> Iterator[RedisServer]:
    """A fresh private Redis for one test (never the shared one on 6379); skips without redis-server."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed")
    name = f"redis-{next(_instance_numbers)}"
    for attempt in range(START_ATTEMPTS):
        server = RedisServer(_free_port(), e2e_workdir / f"{name}-{attempt}.log", executable)
        try:
            server.start()
        except pytest.fail.Exception:
            if "Address already in use" in server.log_path.read_text(errors="replace"):
                continue
            raise
        break
    else:
        pytest.fail("redis-server could not bind a port", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


DaphneFactory = Callable[..., list[DaphneServer]]


@pytest.fixture
def daphne_factory(request: pytest.FixtureRequest, e2e_workdir: Path) -> Iterator[DaphneFactory]:
    """Start plain daphne processes that live for one test only.

    ``daphne_factory("a", "b", REDIS_URL=redis.url)`` starts one process per name, concurrently,
    with :func:`e2e_env` plus the given variables (``DJANGO_SETTINGS_MODULE`` included), on the
    shared database and key; ``tls=True`` serves them over TLS (for Amplify); ``server_name="uvicorn"``
    starts uvicorn instead (see :data:`UVICORN_PROTOCOLS`). At teardown each is stopped, and the test
    fails if one died early or logged a ``Traceback``.
    """
    started: list[DaphneServer] = []
    env = request.getfixturevalue("e2e_env")
    api_key = request.getfixturevalue("e2e_api_key")

    def start(
        *names: str, tls: bool = False, server_name: str = "daphne", **extra_env: str
    ) -> list[DaphneServer]:
        tls_paths = request.getfixturevalue("tls_files") if tls else None

        def one(name: str) -> DaphneServer:
            return _start_daphne(
                workdir=e2e_workdir,
                name=f"{name}-{next(_instance_numbers)}",
                env={**env, **extra_env},
                tls=tls_paths,
                api_key=lambda: api_key,
                server_name=server_name,
            )

        with ThreadPoolExecutor(max_workers=len(names) or 1) as pool:
            futures = [pool.submit(one, name) for name in names]
        servers = []
        for future in futures:
            if future.exception() is None:
                started.append(future.result())
                servers.append(future.result())
        for future in futures:
            future.result()  # re-raises the first failure; the others are stopped at teardown
        return servers

    try:
        yield start
    finally:
        died = {server.http_url: server.process.poll() for server in started}
        for server in started:
            server.stop()
    for server in started:
        if died[server.http_url] is not None:
            pytest.fail(
                f"daphne ({server.http_url}) exited early with code {died[server.http_url]}; "
                f"its log:\n{server.log_text()}",
                pytrace=False,
            )
        server.assert_no_traceback()


@pytest.fixture(scope="session")
def start_tls_daphne(
    e2e_workdir: Path,
    e2e_env: dict[str, str],
    e2e_api_key: str,
    tls_files: tuple[Path, Path, Path],
) -> Iterator[Callable[..., DaphneServer]]:
    """A factory: ``start_tls_daphne(settings_module, env=None)`` returns a running TLS daphne.

    The server runs ``settings_module`` (``DJANGO_SETTINGS_MODULE``) with ``env`` added to the
    usual environment, on the shared database (``server.api_key`` is the session's key). Each
    distinct ``(settings_module, env)`` starts one server, reused by later calls and stopped at
    the end of the session. Tests that want the per-test checks of ``daphne_tls_server`` wrap it
    with ``_checked``.
    """
    servers: dict[tuple[str, tuple[tuple[str, str], ...]], DaphneServer] = {}

    def start(settings_module: str, env: Mapping[str, str] | None = None) -> DaphneServer:
        extra = dict(env or {})
        key = (settings_module, tuple(sorted(extra.items())))
        server = servers.get(key)
        if server is None:
            server = servers[key] = _start_daphne(
                workdir=e2e_workdir,
                name=f"{settings_module.rsplit('.', 1)[-1]}-{len(servers)}",
                env={**e2e_env, "DJANGO_SETTINGS_MODULE": settings_module, **extra},
                tls=tls_files,
                api_key=lambda: e2e_api_key,
            )
        server.assert_alive()
        return server

    yield start
    _stop_all(list(servers.values()))


@pytest.fixture(scope="session")
def start_variant(
    e2e_workdir: Path, e2e_env: dict[str, str], e2e_api_key: str
) -> Iterator[Callable[..., DaphneServer]]:
    """A factory: ``start_variant(name, settings_module=None)`` returns a running plain server.

    ``name`` is one of :data:`VARIANTS`. Each distinct ``(name, settings_module)`` starts one
    process on the shared database, reused by later calls and stopped at the end of the
    session. Tests that want the per-test checks wrap it with ``_checked``.
    """
    servers: dict[tuple[str, str | None], DaphneServer] = {}

    def start(name: str, settings_module: str | None = None) -> DaphneServer:
        server = servers.get((name, settings_module))
        if server is None:
            server_name, extra = VARIANTS[name]
            env = {**e2e_env, **extra}
            if settings_module is not None:
                env["DJANGO_SETTINGS_MODULE"] = settings_module
            server = servers[name, settings_module] = _start_daphne(
                workdir=e2e_workdir,
                name=f"{name}-{len(servers)}",
                env=env,
                tls=None,
                api_key=lambda: e2e_api_key,
                server_name=server_name,
            )
        server.assert_alive()
        return server

    yield start
    _stop_all(list(servers.values()))


def _stop_all(servers: list[DaphneServer]) -> None:
    """Stop the servers a session factory started; fail if one had exited early."""
    died = {server.http_url: server.process.poll() for server in servers}
    for server in servers:
        server.stop()
    for server in servers:
        if died[server.http_url] is not None:
            pytest.fail(
                f"{server.http_url} exited early with code {died[server.http_url]}; "
                f"its log:\n{server.log_text()}",
                pytrace=False,
            )


@dataclass
class CommandProcess:
    """One ``manage.py`` command running beside the servers, and its log."""

    args: tuple[str, ...]
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """``SIGTERM`` (the commands finish their round first), then ``SIGKILL`` if it lingers."""
        return _terminate(self.process)


@pytest.fixture
def manage_command(e2e_workdir: Path, e2e_env: dict[str, str]) -> Iterator[Callable[..., CommandProcess]]:
    """``manage_command("realtime_relay", REDIS_URL=...)`` starts ``manage.py realtime_relay``.

    The environment is :func:`e2e_env` plus the given variables. Every command is stopped at
    teardown; the test fails if one logged a ``Traceback``.
    """
    started: list[CommandProcess] = []

    def start(*args: str, **extra_env: str) -> CommandProcess:
        log_path = e2e_workdir / f"{args[0]}-{next(_instance_numbers)}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [_python(), "manage.py", *args],
                cwd=REPO_ROOT,
                env={**e2e_env, **extra_env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        command = CommandProcess(args, log_path, process)
        started.append(command)
        return command

    try:
        yield start
    finally:
        for command in started:
            command.stop()
    for command in started:
        if "Traceback" in command.log_text():
            name = " ".join(command.args)
            pytest.fail(f"manage.py {name} logged a Traceback:\n{command.log_text()}", pytrace=False)
