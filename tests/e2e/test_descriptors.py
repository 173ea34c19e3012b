"""A daphne short of file descriptors refuses new connections instead of failing the work it admitted.

The server runs under ``ulimit -n 256``: past ``MAX_DESCRIPTOR_SHARE`` (0.8) of that, a new
connection's first request is answered 429 (``LimitExceededException``, ``Retry-After``,
``Connection: close``) and the connection closed; the connections it holds go on, and once
some close, new ones are served again. Nothing fails with "Too many open files".
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import ASGI_APPLICATION, REPO_ROOT, STARTUP_TIMEOUT, _free_port, _python
from .test_daphne_door import read_response

pytestmark = pytest.mark.e2e

SOFT_LIMIT = 256
# More than the server may hold at 0.8 of its limit, fewer than the limit itself.
IDLE = 240


@pytest.fixture
def short_daphne(e2e_env: dict[str, str], e2e_workdir: Path, e2e_api_key: str) -> Iterator[tuple[int, Path]]:
    """daphne under ``ulimit -n 256``, on the shared database (``e2e_api_key`` prepared it)."""
    port = _free_port()
    log_path = e2e_workdir / f"descriptors-{port}.log"
    daphne = f"{_python()} -m daphne -e tcp:{port}:interface=127.0.0.1 {ASGI_APPLICATION}"
    command = f"ulimit -n {SOFT_LIMIT} && exec {daphne}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "-c", command], cwd=REPO_ROOT, env=e2e_env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
                    assert response.status == 200
                break
            except OSError:
                assert process.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "daphne did not start"
                time.sleep(0.2)
        yield port, log_path
    finally:
        process.terminate()
        process.wait(timeout=10)


def healthz(port: int) -> tuple[bytes, dict[bytes, bytes], bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        status, headers, body = read_response(conn)
    return status, {name.lower(): value for name, value in headers}, body


def test_past_its_share_of_descriptors_daphne_refuses_new_connections_and_serves_the_rest(short_daphne):
    port, log_path = short_daphne
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(IDLE)]
    try:
        time.sleep(3)  # accepted; those refused and silent are closed after the grace
        status, headers, body = healthz(port)
        assert status == b"HTTP/1.1 429 Too Many Requests"
        assert (headers[b"retry-after"], headers[b"connection"]) == (b"1", b"close")
        assert json.loads(body) == {
            "errors": [
                {
                    "errorType": "LimitExceededException",
                    "message": "Too many connections right now; retry with backoff.",
                }
            ]
        }
        # The connections it holds still serve: the first one opened was accepted before the limit.
        idle[0].sendall(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert read_response(idle[0])[0] == b"HTTP/1.1 200 OK"
    finally:
        for conn in idle:
            conn.close()
    deadline = time.monotonic() + 10
    while (status := healthz(port)[0]) != b"HTTP/1.1 200 OK" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == b"HTTP/1.1 200 OK"
    log = log_path.read_text()
    assert "Too many open files" not in log
    assert "Traceback" not in log
