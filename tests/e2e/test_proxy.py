"""The site as deployed: nginx (deploy/nginx) in front of ``realtime_serve`` on Redis and PostgreSQL.

One stack for the module: a private ``redis-server``, a fresh PostgreSQL database, ``manage.py
realtime_serve --processes 2 --command quiz_worker`` (two daphne processes on one socket, the
relay and the scoring worker) and an unprivileged nginx rendered from ``deploy/nginx`` into a
temporary directory, listening on free ports over HTTP and over TLS (terminated by nginx). The
site trusts exactly that proxy (``TRUSTED_PROXIES=127.0.0.1``) and lets each client 3 joins a
minute, so whose address a join is counted against shows.

- a game of ``quiz_loadtest`` through nginx, with an Amplify client on the TLS side, during which
  every server process is replaced (``SIGHUP``: a rolling restart): the clients of each process
  are closed with 1001, reconnect through nginx and resume; every check of the load test passes
  and Amplify gets every event once, in order;
- ``SIGTERM`` to the server processes during a crowd of joins and WebSocket publishes: every
  joined player is stored, every request is answered, every WebSocket is closed with
  1001 "going away", and every publish acknowledged before it is in the channel's history
  (none that was not);
- the client address behind the proxy, and a forged ``X-Forwarded-For`` ignored.

A test fails if a process of the site logged a ``Traceback``. Skipped without nginx,
redis-server, PostgreSQL or node.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.nginx import Nginx, start_nginx
from bench.nginx import executable as nginx_executable

from .conftest import (
    REPO_ROOT,
    SHUTDOWN_TIMEOUT,
    RedisServer,
    _free_port,
    _manage,
    _python,
    enable_history,
)

# The stack starts once for the module (within the first test's time); a game is ~30 s of it.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

PG_HOST = "127.0.0.1"
PG_PORT = 5432
AMPLIFY_SCRIPTS = Path(__file__).parent / "amplify"
STARTUP_TIMEOUT = 90.0
TIMEOUT = 10.0
SUBPROTOCOL = "aws-appsync-event-ws"
GOING_AWAY = (1001, "going away")
JOIN_RATE_PER_CLIENT = "3/60s"
# Publishes of each WebSocket of the drain test at most (its channel keeps 10,000).
MAX_PUBLISHES = 500

SETUP = """
import json
from django.contrib.auth import get_user_model
from quiz import services
from realtime.store.services import apikey_create
host, _ = get_user_model().objects.get_or_create(username="proxy-host", defaults={"is_staff": True})
question_set = services.question_set_import(data={"title": "Proxy", "questions": [
    {"text": "Up?", "choices": ["yes", "no"], "correct": 0}]})
game = services.game_open(game=services.game_create(host=host, question_set=question_set))
_, key = apikey_create(description="proxy")
print(json.dumps({"code": game.code, "api_key": key}))
"""


# -- the stack -------------------------------------------------------------------------------


@dataclass
class Site:
    """The supervisor of the server processes, and what runs around it."""

    port: int
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    nginx: Nginx | None = None
    code: str = ""
    api_key: str = ""
    ca_file: Path | None = None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def pids(self, name: str) -> list[int]:
        """Every pid the supervisor started for ``name``, oldest first."""
        return [int(pid) for pid in re.findall(rf"\[serve\] {name} started \(pid (\d+)\)", self.log_text())]

    def wait_for(self, pattern: str, *, count: int = 1, within: float = STARTUP_TIMEOUT) -> None:
        deadline = time.monotonic() + within
        while len(re.findall(pattern, self.log_text())) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"never logged {pattern!r} ×{count}; the log:\n{self.log_text()}", pytrace=False)
            time.sleep(0.1)


def _terminate(process: subprocess.Popen[bytes], timeout: float = SHUTDOWN_TIMEOUT) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def _nginx_executable() -> str:
    found = nginx_executable()
    if found is None:
        pytest.skip("nginx is not installed (bin/setup installs it as root on Debian)")
    return found


def _pg_admin() -> Any:
    import psycopg

    return psycopg.connect(host=PG_HOST, port=PG_PORT, user="postgres", dbname="postgres", autocommit=True)


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, e2e_env: dict[str, str], tls_files: tuple[Path, Path, Path]
) -> Iterator[Site]:
    workdir = tmp_path_factory.mktemp("proxy")
    redis_executable = shutil.which("redis-server")
    if redis_executable is None:
        pytest.skip("redis-server is not installed")
    _nginx_executable()
    try:
        admin = _pg_admin()
    except Exception as error:  # any failure to reach it means: not here
        pytest.skip(f"PostgreSQL is not reachable on {PG_HOST}:{PG_PORT}: {error}")
    database = f"rt_e2e_proxy_{uuid.uuid4().hex[:10]}"
    admin.execute(f'CREATE DATABASE "{database}"')
    redis = RedisServer(_free_port(), workdir / "redis.log", redis_executable)
    redis.start()
    env = {
        **e2e_env,
        "DATABASE_URL": f"postgres://postgres@{PG_HOST}:{PG_PORT}/{database}",
        "REDIS_URL": redis.url,
        "TRUSTED_PROXIES": "127.0.0.1",
        "QUIZ_JOIN_RATE_PER_CLIENT": JOIN_RATE_PER_CLIENT,
    }
    supervisor: subprocess.Popen[bytes] | None = None
    proxy: Nginx | None = None
    try:
        _manage(env, "migrate", "--no-input", "-v", "0")
        # Above what the drain test publishes, so its history holds every event.
        enable_history(env, "chat", 10_000)
        setup = json.loads(_manage(env, "shell", "-v", "0", "-c", SETUP).strip().splitlines()[-1])
        log_path = workdir / "serve.log"
        with log_path.open("wb") as log:
            supervisor = subprocess.Popen(
                [
                    _python(),
                    "manage.py",
                    "realtime_serve",
                    "--processes",
                    "2",
                    "--port",
                    "0",
                    "--command",
                    "quiz_worker",
                    "--drain-timeout",
                    "15",
                ],
                cwd=REPO_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        site = Site(
            0, env, log_path, supervisor, code=setup["code"], api_key=setup["api_key"], ca_file=tls_files[2]
        )
        site.wait_for(r"listening on 127\.0\.0\.1:\d+")
        site.port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", site.log_text()).group(1))  # type: ignore[union-attr]
        site.wait_for(r"realtime_serve: ready", count=2)
        proxy = start_nginx(workdir, site.port, tls=(tls_files[0], tls_files[1]))
        site.nginx = proxy
        yield site
    finally:
        if proxy is not None:
            proxy.stop()
        if supervisor is not None:
            _terminate(supervisor, timeout=40)
        redis.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.close()
    assert "Traceback" not in site.log_text(), site.log_text()


@pytest.fixture
def checked_site(site: Site) -> Iterator[Site]:
    """The site, checked after the test for a Traceback in what the test added to its log."""
    offset = len(site.log_text())
    yield site
    added = site.log_text()[offset:]
    assert "Traceback" not in added, added
    assert site.process.poll() is None, "the supervisor exited"


# -- helpers ---------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    body: Any


def request(
    port: int,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    source_ip: str = "127.0.0.1",
) -> Reply:
    """One request on a fresh connection from ``source_ip``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(source_ip, 0))
    try:
        payload = None if body is None else json.dumps(body).encode()
        conn.request(
            method, path, body=payload, headers={"content-type": "application/json", **(headers or {})}
        )
        response = conn.getresponse()
        raw = response.read()
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode("utf-8", "replace")
        return Reply(response.status, parsed)
    finally:
        conn.close()


def join(port: int, code: str, nickname: str, source_ip: str, forwarded: str | None = None) -> Reply:
    headers = {"x-forwarded-for": forwarded} if forwarded is not None else {}
    return request(port, "POST", f"/api/quiz/games/{code}/join", {"nickname": nickname}, headers, source_ip)


def header_subprotocol(authorization: dict[str, str]) -> str:
    import base64

    raw = json.dumps(authorization, separators=(",", ":")).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def history(site: Site, channel: str) -> list[Any]:
    """Every event of ``channel``'s history, oldest first (GET /event/history through nginx)."""
    assert site.nginx is not None
    events: list[Any] = []
    since = 0
    while True:
        reply = request(
            site.nginx.http_port,
            "GET",
            f"/event/history?channel={channel}&since={since}&limit=300",
            headers={"x-api-key": site.api_key},
        )
        assert reply.status == 200, reply
        page = reply.body["events"]
        events += [json.loads(item["event"]) for item in page]
        if not page or reply.body["complete"]:
            return events
        since = page[-1]["offset"]


# -- the game through nginx, with a rolling restart --------------------------------------------


def test_a_game_through_nginx_completes_while_every_server_process_is_replaced(
    checked_site: Site, node_executable: str
) -> None:
    site = checked_site
    assert site.nginx is not None
    run = uuid.uuid4().hex[:8]
    channel = f"/chat/proxy-{run}"
    amplify = subprocess.Popen(
        [node_executable, str(AMPLIFY_SCRIPTS / "live_client.mjs"), channel],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "RT_EVENT_URL": f"https://127.0.0.1:{site.nginx.tls_port}/event",
            "RT_API_KEY": site.api_key,
            "NODE_EXTRA_CA_CERTS": str(site.ca_file),
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        },
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[dict[str, Any]] = []

    def read() -> None:
        assert amplify.stdout is not None
        for line in amplify.stdout:
            if line.startswith("{"):
                lines.append(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    loadtest: subprocess.Popen[str] | None = None
    try:
        _wait(
            lambda: any("ready" in line or "readyError" in line or "fatal" in line for line in lines),
            30,
            "Amplify",
        )
        assert {"ready": True} in [{k: v for k, v in line.items() if k != "at"} for line in lines], lines

        published: list[int] = []

        def publish(n: int) -> None:
            reply = request(
                site.nginx.http_port,  # type: ignore[union-attr]
                "POST",
                "/event",
                {"channel": channel, "events": [json.dumps({"n": n})]},
                {"x-api-key": site.api_key},
            )
            assert reply.status == 200, reply
            published.append(n)

        publish(0)
        loadtest = subprocess.Popen(
            [
                _python(),
                "manage.py",
                "quiz_loadtest",
                "--url",
                site.nginx.http_url,
                "--players",
                "40",
                "--questions",
                "4",
                "--answer-window",
                "3",
                "--time-limit",
                "20",
                "--reveal-pause",
                "0.5",
                "--join-bench",
                "0",
                "--no-goals",
                "--seed",
                "7",
            ],
            cwd=REPO_ROOT,
            env=site.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        # Mid-game: once the first answer is stored, every server process is replaced in turn.
        _wait(lambda: _answers_stored(site) > 0 or loadtest.poll() is not None, 120, "the first answer")
        assert loadtest.poll() is None, "the game ended before the restart: " + (
            loadtest.stdout.read() if loadtest.stdout else ""
        )
        old_servers = site.pids("server-1")[-1:] + site.pids("server-2")[-1:]
        site.process.send_signal(signal.SIGHUP)
        n = 1
        while "rolling restart done" not in site.log_text():
            publish(n)
            n += 1
            time.sleep(0.2)
            assert n < 1000, site.log_text()
        for _ in range(3):
            publish(n)
            n += 1
        output, _ = loadtest.communicate(timeout=180)
        assert loadtest.returncode == 0, output
        assert "FAIL" not in output, output
        reconnected = re.search(r"websockets reconnected after a going-away close \(1001\)\s+(\d+)", output)
        assert reconnected and int(reconnected.group(1)) > 0, output
        # Both old processes drained and exited; both slots serve from new ones.
        for pid in old_servers:
            assert re.search(rf"\(pid {pid}\) exited with 0", site.log_text()), site.log_text()

        _wait(
            lambda: published[-1] in [line.get("event", {}).get("n") for line in lines if "event" in line],
            30,
            "Amplify's last event",
        )
        received = [line["event"]["n"] for line in lines if "event" in line]
        assert received == published, (received, published)
        assert not [line for line in lines if "error" in line or "fatal" in line], lines
    finally:
        if loadtest is not None and loadtest.poll() is None:
            loadtest.kill()
            loadtest.communicate()
        with contextlib.suppress(OSError):
            amplify.stdin.write("close\n")  # type: ignore[union-attr]
            amplify.stdin.flush()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            amplify.wait(timeout=10)
        if amplify.poll() is None:
            amplify.kill()
        amplify.wait(timeout=10)
        reader.join(timeout=5)
        for pipe in (amplify.stdin, amplify.stdout):
            with contextlib.suppress(OSError):
                pipe.close()  # type: ignore[union-attr]


def _answers_stored(site: Site) -> int:
    import psycopg

    with psycopg.connect(
        site.env["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True
    ) as conn:
        row = conn.execute("SELECT count(*) FROM quiz_answer").fetchone()
    return int(row[0]) if row else 0


def _wait(condition: Any, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {within:.0f}s for {what}", pytrace=False)
        time.sleep(0.05)


# -- the drain -------------------------------------------------------------------------------


def test_sigterm_drains_every_server_process_without_losing_a_join_or_a_publish(checked_site: Site) -> None:
    site = checked_site
    assert site.nginx is not None
    port = site.nginx.http_port
    run = uuid.uuid4().hex[:8]
    channel = f"/chat/drain-{run}"
    stop = threading.Event()
    joins: list[tuple[str, Reply | str]] = []

    def crowd(worker: int) -> None:
        # Each nickname from an address of its own: 3 joins a minute per address are allowed.
        i = 0
        while not stop.is_set():
            nickname = f"d{run}-{worker}-{i}"
            source = f"127.{10 + worker}.{i // 250}.{1 + i % 250}"
            try:
                joins.append((nickname, join(port, site.code, nickname, source)))
            except (OSError, http.client.HTTPException) as error:
                joins.append((nickname, f"{type(error).__name__}: {error}"))
            i += 1

    async def publisher(index: int) -> dict[str, Any]:
        """One WebSocket publishing numbered events back to back until it is closed."""
        auth = {"x-api-key": site.api_key, "host": f"127.0.0.1:{port}"}
        acked: list[str] = []
        sent: list[str] = []
        async with connect(
            f"ws://127.0.0.1:{port}/event/realtime",
            subprotocols=[SUBPROTOCOL, header_subprotocol(auth)],  # type: ignore[list-item]
            ping_interval=None,
            proxy=None,
        ) as ws:
            await ws.send('{"type":"connection_init"}')
            assert json.loads(await ws.recv())["type"] == "connection_ack"
            started.set()
            close: tuple[int, str] | None = None
            n = 0
            try:
                while n < MAX_PUBLISHES:
                    event = f"{index}-{n}"
                    frame = {
                        "type": "publish",
                        "id": event,
                        "channel": channel,
                        "events": [json.dumps(event)],
                        "authorization": auth,
                    }
                    await ws.send(json.dumps(frame))
                    sent.append(event)
                    while True:
                        reply = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                        if reply.get("type") != "ka":
                            break
                    assert (reply["type"], reply["id"], len(reply["successful"]), reply["failed"]) == (
                        "publish_success",
                        event,
                        1,
                        [],
                    ), reply
                    acked.append(event)
                    n += 1
                while True:  # enough published: wait for the server's close
                    await ws.recv()
            except ConnectionClosed as closed:
                close = (closed.rcvd.code, closed.rcvd.reason) if closed.rcvd else None
        return {"acked": acked, "sent": sent, "close": close}

    started = asyncio.Event()

    async def scenario() -> list[dict[str, Any]]:
        tasks = [asyncio.create_task(publisher(i)) for i in range(12)]
        await asyncio.wait_for(started.wait(), TIMEOUT)
        await asyncio.sleep(1.0)
        servers = site.pids("server-1")[-1:] + site.pids("server-2")[-1:]
        for pid in servers:
            os.kill(pid, signal.SIGTERM)
        return await asyncio.wait_for(asyncio.gather(*tasks), 60)

    threads = [threading.Thread(target=crowd, args=(worker,)) for worker in range(4)]
    before = len(site.pids("server-1")) + len(site.pids("server-2"))
    for thread in threads:
        thread.start()
    try:
        sockets = asyncio.run(scenario())
        # Joins go on while the new processes start: the listening socket never closed.
        site.wait_for(r"realtime_serve: ready", count=before + 2)
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=60)

    # Every WebSocket: closed with 1001 "going away", after the answer to each publish the server took.
    assert [s["close"] for s in sockets] == [GOING_AWAY] * len(sockets), sockets
    stored = history(site, channel)
    acked = [event for s in sockets for event in s["acked"]]
    unanswered = [event for s in sockets for event in s["sent"] if event not in s["acked"]]
    assert sorted(stored) == sorted(acked), (stored, acked)
    assert not set(unanswered) & set(stored)
    # Every join answered (201; never a 5xx or a dropped connection) and every 201 stored, once.
    statuses = {reply.status if isinstance(reply, Reply) else reply for _, reply in joins}
    assert statuses == {201}, statuses
    players = _players(site)
    for nickname, reply in joins:
        assert isinstance(reply, Reply)
        assert players.get(nickname) == reply.body["player_id"], nickname
    assert len(joins) > 20


def _players(site: Site) -> dict[str, int]:
    import psycopg

    with psycopg.connect(
        site.env["DATABASE_URL"].replace("postgres://", "postgresql://"), autocommit=True
    ) as conn:
        rows = conn.execute("SELECT nickname, id FROM quiz_player").fetchall()
    return {nickname: pk for nickname, pk in rows}


# -- the client address behind the proxy --------------------------------------------------------


def test_joins_count_against_the_client_behind_the_proxy_and_a_forged_header_is_ignored(
    checked_site: Site,
) -> None:
    site = checked_site
    assert site.nginx is not None
    proxy, direct = site.nginx.http_port, site.port
    run = uuid.uuid4().hex[:6]
    a, b, c = "127.0.9.1", "127.0.9.2", "127.0.9.3"

    # Through nginx, each client has 3 joins a minute of its own (nginx sets X-Forwarded-For).
    assert [join(proxy, site.code, f"a{run}{i}", a).status for i in range(3)] == [201, 201, 201]
    assert join(proxy, site.code, f"a{run}3", a).status == 429
    assert join(proxy, site.code, f"b{run}0", b).status == 201
    # A client claiming another address through nginx: nginx replaces the header.
    assert join(proxy, site.code, f"a{run}4", a, forwarded=b).status == 429
    # Straight to the servers, a peer that is not the proxy: its header is ignored both ways.
    assert join(direct, site.code, f"a{run}5", a, forwarded="127.0.9.77").status == 429
    assert join(direct, site.code, f"c{run}0", c, forwarded=a).status == 201
