"""``manage.py quiz_loadtest``: a small, fast smoke run against a real daphne, and its pure parts.

The server runs the site's settings with a low join rate (a settings module
written next to a fresh SQLite database), so 30 players meet 429s and back
off, and the overload phase's 3× rate stays cheap.
"""

from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, InvalidMessage, InvalidStatus
from websockets.http11 import Response as WsResponse

from quiz.loadtest import storm
from quiz.loadtest.http import Backoff, Response, source_addresses
from quiz.loadtest.reconnect import Attempt, Failure, RetryPolicy, classify_error, classify_frame, tally
from quiz.loadtest.report import Report, percentile
from realtime.core.rates import parse_rate

from .refusing_door import HTTP_429, REFUSE, RESET, RefusingDoor

REPO_ROOT = Path(__file__).resolve().parents[2]
JOIN_RATE = "20/s"
SETTINGS = f"""
from config.settings.base import *  # noqa: F403

QUIZ = {{**QUIZ, "JOIN_RATE": "{JOIN_RATE}", "LEADERBOARD_INTERVAL": 0.2}}  # noqa: F405
"""


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    url: str
    log: Path
    env: dict[str, str]

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def loadtest_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """daphne on a fresh SQLite database, the site's settings with a low join rate."""
    workdir = tmp_path_factory.mktemp("quiz-loadtest")
    (workdir / "quiz_loadtest_settings.py").write_text(SETTINGS)
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL", "QUIZ_WORKER"}}
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "quiz_loadtest_settings",
            "PYTHONPATH": os.pathsep.join([str(workdir), str(REPO_ROOT)]),
            "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
            "DEBUG": "0",
            "ALLOWED_HOSTS": "*",
            "PYTHONUNBUFFERED": "1",
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=REPO_ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port = _free_port()
    log = workdir / "daphne.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "config.asgi:application"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log, env)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, server.log_text()
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, server.log_text()
                time.sleep(0.05)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _manage(command: str, server: Server, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``manage.py <command> --url=<the server> <args>``, as a user runs it against a server."""
    return subprocess.run(
        [sys.executable, "manage.py", command, f"--url={server.url}", *args],
        cwd=REPO_ROOT,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _command(server: Server, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return _manage("quiz_loadtest", server, *args, timeout=timeout)


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_a_small_game_passes_every_check(loadtest_server: Server) -> None:
    result = _command(
        loadtest_server,
        "--players=30",
        "--questions=2",
        "--time-limit=10",
        "--answer-window=0.5",
        "--reveal-pause=0.3",
        "--join-bench=0.5",
        "--bench-connections=16",
        "--overload=3",
        "--overload-seconds=2",
        f"--server-pid={loadtest_server.process.pid}",
        "--no-goals",
        "--seed=7",
        timeout=150,
    )
    output = result.stdout
    server_log = loadtest_server.log_text()
    assert result.returncode == 0, f"{output}\n{result.stderr}\n--- server log ---\n{server_log}"
    for check in (
        "PASS  every player was admitted",
        "PASS  every admitted (201) player is stored (ORM)",
        "PASS  no player stored without a 201",
        "PASS  Answer rows == answers accepted",
        "PASS  no answer left unscored",
        "PASS  Player.score == sum of its Answer.points",
        "PASS  every accepted answer's score reached its player",
        "PASS  every answer scored exactly once (one score event each)",
        "PASS  final leaderboard == database (top N with ranks, player count)",
        "PASS  no 5xx response",
        "PASS  at 3× the admission rate only 201 and 429",
        "PASS  overload: every 201 is stored",
        "PASS  join bench: every 201 is stored",
    ):
        assert check in output, output
    assert "FAIL" not in output, output
    assert unexpected_tracebacks(server_log) == [], server_log


@pytest.mark.e2e
@pytest.mark.timeout(180)
def test_players_retry_connects_the_front_door_refuses_and_the_run_counts_them(
    loadtest_server: Server,
) -> None:
    # The first 12 WebSocket connects are refused, in each shape a connect storm takes.
    shapes = [REFUSE] * 6 + [HTTP_429] * 3 + [RESET] * 3
    door = RefusingDoor(int(loadtest_server.url.rsplit(":", 1)[1]), shapes)
    with door.running():
        result = _command(
            loadtest_server,
            f"--url=http://127.0.0.1:{door.port}",
            "--players=20",
            "--questions=1",
            "--time-limit=10",
            "--answer-window=0.5",
            "--reveal-pause=0.3",
            "--join-bench=0",
            "--no-goals",
            "--seed=11",
            timeout=150,
        )
    output = result.stdout
    assert door.refused == {REFUSE: 6, HTTP_429: 3, RESET: 3}
    server_log = loadtest_server.log_text()
    assert result.returncode == 0, f"{output}\n{result.stderr}\n--- server log ---\n{server_log}"
    figures = dict(
        re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in output.split("Checks")[0].splitlines()[1:]
    )
    assert figures["websocket connects refused and retried"] == (
        "9 (connection_error LimitExceededError (429): 6, HTTP 429/503 on the upgrade: 3)"
    )
    assert figures["websocket connects retried after another failure"] == (
        "3 (connection refused, reset or closed: 3)"
    )
    assert figures["websocket reconnects refused and retried"] == "0"
    assert figures["websocket reconnects retried after another failure"] == "0"
    assert figures["websocket connect + 3 subscribes"].startswith("20/20 in "), output
    for check in (
        "PASS  every admitted player connected and subscribed",
        "PASS  no socket closed by the server",
        "PASS  every answer accepted",
        "PASS  every accepted answer's score reached its player",
        "PASS  every question and its reveal (counts == answers accepted) reached everyone",
    ):
        assert check in output, output
    assert "FAIL" not in output, output


def unexpected_tracebacks(log: str) -> list[str]:
    """Log records with a traceback, but the scoring worker's retried SQLite lock conflict.

    Known server issue (reported): on SQLite the worker's read-then-write transaction
    fails with "database is locked" when an answer is inserted from another thread
    meanwhile; it rolls back and retries, so nothing is lost, but it logs an ERROR.
    """
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log)
    return [
        record[:500]
        for record in records
        if "Traceback" in record
        and not ("quiz.worker scoring failed" in record.split("\n", 1)[0] and "database is locked" in record)
    ]


@pytest.mark.e2e
def test_the_command_fails_when_it_cannot_log_in_as_the_host(loadtest_server: Server) -> None:
    result = _command(
        loadtest_server,
        "--players=1",
        "--join-bench=0",
        "--host-user=nobody",
        "--host-password=wrong",
        timeout=60,
    )
    assert result.returncode == 1
    assert "admin login as 'nobody' failed" in result.stderr


def _storm(server: Server, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return _manage("quiz_storm", server, *args, timeout=timeout)


@pytest.mark.e2e
@pytest.mark.timeout(120)
def test_quiz_storm_measures_capacity_per_level_and_splits_a_storm_over_processes(
    loadtest_server: Server,
) -> None:
    result = _storm(
        loadtest_server,
        "--factors=2",
        "--capacity-concurrency=2,4",
        "--capacity-seconds=0.5",
        "--storm-seconds=0.5",
        "--processes=2",
        "--addresses=20",
        "--crowd=0",
        "--no-goals",
        timeout=100,
    )
    output = result.stdout
    assert result.returncode == 0, f"{output}\n{result.stderr}"
    lines = output.splitlines()
    levels = [line.split()[1:3] for line in lines if line.strip().startswith("capacity:")]
    assert levels == [["2", "loops"], ["4", "loops"]], output
    assert sum("(the reference)" in line for line in lines) == 1, output
    assert any(line.strip().startswith("storm 2×: where a request's time went") for line in lines), output
    for check in (
        "PASS  storm 2×: every request answered in time, only 201 and 429",
        "PASS  storm 2×: every 429 has Retry-After",
        "PASS  storm 2×: the database holds exactly the players that got a 201",
    ):
        assert check in output, output


@pytest.mark.e2e
def test_quiz_storm_refuses_a_capacity_level_the_in_flight_limit_would_throttle(
    loadtest_server: Server,
) -> None:
    result = _storm(loadtest_server, "--capacity-concurrency=8,64", timeout=60)
    assert result.returncode == 1
    assert "--capacity-concurrency: between 1 and MAX_IN_FLIGHT - 1 (63)" in result.stderr


# -- the pure parts -------------------------------------------------------------


def test_a_storms_parts_merge_into_one_result() -> None:
    one = storm.Offered("2×", factor=2, target_rate=100, offered_rate=50, seconds=4.0, timeouts=1)
    one.add("a", Response(201, {}, [], b'{"player_id": 7}'), 0.2)
    one.late += [0.01]
    two = storm.Offered("2×", factor=2, target_rate=100, offered_rate=40, seconds=5.0)
    two.add("b", Response(429, {"retry-after": "1"}, [], b"{}"), 0.1)
    two.add("c", Response(429, {"retry-after": "1"}, [], b"{}"), 0.3)
    two.late += [0.02, 0.03]
    two.connections = 3

    merged = storm.merged([one, two])

    assert (merged.name, merged.factor, merged.target_rate) == ("2×", 2, 100)
    assert merged.statuses == {201: 1, 429: 2}
    assert merged.latencies == {201: [0.2], 429: [0.1, 0.3]}
    assert merged.admitted == {"a": 7}
    assert (merged.timeouts, merged.connections, merged.retry_after_missing) == (1, 3, 0)
    assert sorted(merged.late) == [0.01, 0.02, 0.03]
    # Rates over the longest part: 50/s × 4 s + 40/s × 5 s = 400 requests in 5 s.
    assert (merged.seconds, merged.offered_rate) == (5.0, 80.0)


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [(0, None, 0.0, 0.1), (3, None, 0.0, 0.8), (10, None, 0.0, 5.0), (0, 2.0, 2.0, 2.1), (10, 1.0, 1.0, 6.0)],
)
def test_backoff_is_full_jitter_and_never_sooner_than_retry_after(
    attempt: int, retry_after: float | None, low: float, high: float
) -> None:
    policy = Backoff(base=0.1, cap=5.0)
    rng = random.Random(1)
    delays = [policy.delay(attempt, retry_after, rng) for _ in range(2000)]
    assert low <= min(delays) and max(delays) <= high
    # Full jitter: spread over the whole window, not bunched at its end.
    assert max(delays) - min(delays) > 0.8 * (high - low)


@pytest.mark.parametrize(
    ("retry", "retry_after", "policy", "low", "high"),
    [
        # The quiz pages (RETRY_CAP_MS 1000): the first retry at once, then within 1 s.
        (1, None, RetryPolicy(), 0.0, 0.0),
        (2, None, RetryPolicy(), 0.0, 1.0),
        (9, None, RetryPolicy(), 0.0, 1.0),
        (1, 2.0, RetryPolicy(), 2.0, 2.0),
        (5, 3.0, RetryPolicy(), 3.0, 4.0),
        # realtime.js's default cap (5 s): base 1 s doubling.
        (3, None, RetryPolicy(cap=5.0), 0.0, 2.0),
        (4, None, RetryPolicy(cap=5.0), 0.0, 4.0),
        (8, None, RetryPolicy(cap=5.0), 0.0, 5.0),
    ],
)
def test_reconnect_policy_is_realtime_js_full_jitter_after_retry_after(
    retry: int, retry_after: float | None, policy: RetryPolicy, low: float, high: float
) -> None:
    rng = random.Random(3)
    delays = [policy.delay(retry, retry_after, rng) for _ in range(2000)]
    assert low <= min(delays) and max(delays) <= high
    assert max(delays) - min(delays) >= 0.9 * (high - low)


def _status(code: int, headers: dict[str, str] | None = None) -> InvalidStatus:
    return InvalidStatus(WsResponse(code, "", Headers(headers or {}), b""))


def _error_frame(error_type: str, code: int | None) -> dict[str, object]:
    error: dict[str, object] = {"errorType": error_type, "message": "no"}
    if code is not None:
        error["errorCode"] = code
    return {"type": "connection_error", "errors": [error]}


@pytest.mark.parametrize(
    ("frame", "failure"),
    [
        (_error_frame("LimitExceededError", 429), Failure.REFUSED),
        (_error_frame("LimitExceededError", None), Failure.REFUSED),
        (_error_frame("UnauthorizedException", 401), Failure.FATAL),
        (_error_frame("BadRequestException", None), Failure.FATAL),
        (_error_frame("InternalFailureException", 500), Failure.OTHER),
        ({"type": "error", "errors": []}, Failure.OTHER),
    ],
)
def test_a_connection_error_is_retried_unless_it_would_fail_again(
    frame: dict[str, object], failure: Failure
) -> None:
    assert classify_frame(frame) == Attempt(failure, f"expected connection_ack, got {frame}")


@pytest.mark.parametrize(
    ("error", "failure", "retry_after"),
    [
        (_status(429, {"Retry-After": "2"}), Failure.HTTP_REFUSED, 2.0),
        (_status(429), Failure.HTTP_REFUSED, None),
        (_status(503, {"Retry-After": "soon"}), Failure.HTTP_REFUSED, None),
        (_status(502), Failure.DROPPED, None),
        (_status(403), Failure.FATAL, None),
        (ConnectionRefusedError(111, "Connection refused"), Failure.DROPPED, None),
        (ConnectionResetError(104, "Connection reset by peer"), Failure.DROPPED, None),
        (InvalidMessage("did not receive a valid HTTP response"), Failure.DROPPED, None),
        (ConnectionClosedError(None, None), Failure.DROPPED, None),
        (TimeoutError(), Failure.TIMED_OUT, None),
    ],
)
def test_a_failed_connect_is_classified_with_its_retry_after(
    error: BaseException, failure: Failure, retry_after: float | None
) -> None:
    assert classify_error(error) == Attempt(failure, f"{type(error).__name__}: {error}", retry_after)


def test_the_retries_are_tallied_refusals_apart() -> None:
    retried = Counter({Failure.REFUSED: 5, Failure.HTTP_REFUSED: 2, Failure.DROPPED: 1})
    assert tally(retried, refusals=True) == (
        "7 (connection_error LimitExceededError (429): 5, HTTP 429/503 on the upgrade: 2)"
    )
    assert tally(retried, refusals=False) == "1 (connection refused, reset or closed: 1)"
    assert tally(Counter(), refusals=True) == "0"


@pytest.mark.parametrize(
    ("rate", "per_second"), [("2000/s", 2000.0), ("120/m", 2.0), ("7200/h", 2.0), ("50/10s", 5.0)]
)
def test_parse_rate(rate: str, per_second: float) -> None:
    # quiz_loadtest reads the server's JOIN_RATE as joins per second.
    assert parse_rate(rate).per_second == per_second


def test_source_addresses_are_distinct_loopback_addresses() -> None:
    addresses = source_addresses(600)
    assert len(set(addresses)) == 600
    assert addresses[0] == "127.0.1.1" and addresses[250] == "127.0.2.1"
    assert all(address.startswith("127.") and not address.endswith(".0") for address in addresses)


def test_percentile_and_report_verdict() -> None:
    assert percentile([], 99) is None
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([float(n) for n in range(1, 101)], 99) == 99.0
    report = Report()
    report.check("a", True)
    report.check("b", False, "why", goal=True)
    assert not report.passed
    lines = report.render().splitlines()
    assert lines[-3:] == ["  PASS  a", "  FAIL  goal b — why", "1 checks passed, 1 failed"]
