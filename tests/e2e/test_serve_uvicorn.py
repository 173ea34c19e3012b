"""``manage.py realtime_serve --server uvicorn``: uvicorn's websockets-sansio protocol, supervised.

One supervisor with one uvicorn process on the shared e2e database: the protocol suite's handshake
works, frames go straight to the transport of uvicorn's sans-I/O protocol, a rolling restart sends
the open socket away with 1001 "going away" and a new process takes over, and ``SIGTERM`` drains
and stops everything.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from .conftest import REPO_ROOT, DaphneServer, _python
from .test_daphne import _metrics, handshake, open_socket

GOING_AWAY = 1001
WAIT = 30.0


def _wait_for(log_path: Path, pattern: str, count: int = 1) -> str:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        text = log_path.read_text(errors="replace")
        if len(re.findall(pattern, text)) >= count:
            return text
        time.sleep(0.1)
    pytest.fail(f"never saw {pattern!r} x{count}; log:\n{log_path.read_text(errors='replace')}")


@pytest.fixture
def uvicorn_site(e2e_workdir: Path, e2e_env: dict[str, str], e2e_api_key: str) -> Iterator[DaphneServer]:
    log_path = e2e_workdir / "realtime-serve-uvicorn.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [_python(), "manage.py", "realtime_serve", "--server", "uvicorn", "--port", "0"]
            + ["--drain-timeout", "5"],
            cwd=REPO_ROOT,
            env=e2e_env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        text = _wait_for(log_path, r"listening on 127\.0\.0\.1:\d+ \(1 uvicorn server processes\)")
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        _wait_for(log_path, r"realtime_serve: ready")
        yield DaphneServer("http", port, e2e_api_key, log_path, None, process)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    assert "Traceback" not in log_path.read_text(errors="replace")


async def test_uvicorn_serves_rolls_over_and_drains(uvicorn_site: DaphneServer) -> None:
    server = uvicorn_site
    async with open_socket(server) as ws:
        await handshake(ws)
        exposition = await asyncio.to_thread(_metrics, server)
        assert 'realtime_connection_writer_total{writer="uvicorn-websockets-sansio"} 1.0' in exposition

        server.process.send_signal(signal.SIGHUP)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), WAIT)
        assert ws.close_code == GOING_AWAY
    await asyncio.to_thread(_wait_for, server.log_path, r"realtime_serve: ready", 2)

    # The replacement serves the same socket.
    async with open_socket(server) as ws:
        await handshake(ws)

    server.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(server.process.wait, WAIT) == 0
