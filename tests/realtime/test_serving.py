"""realtime_serve's supervisor, with small Python children standing in for the site's processes."""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from realtime.serving import supervisor as supervisor_module
from realtime.serving.supervisor import READY_MARKER, ChildSpec, Supervisor

# A server stand-in: says it is ready, then runs until SIGTERM, which it reports.
SERVER = f"""
import signal, sys, time
def stop(*_):
    print("drained", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("{READY_MARKER}", flush=True)
while True:
    time.sleep(0.05)
"""


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


class Output(io.BytesIO):
    def text(self) -> str:
        return self.getvalue().decode()


async def wait_for(condition: Any, within: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_each_line_of_a_child_is_prefixed_with_its_name_and_pid() -> None:
    out = Output()
    supervisor = Supervisor([ChildSpec("server-1", python(SERVER), server=True)], out=out)
    running = asyncio.ensure_future(supervisor.run(handle_signals=False))
    await wait_for(lambda: READY_MARKER in out.text())
    pid = supervisor.pid_of("server-1")

    await supervisor.stop()
    await running

    lines = out.text().splitlines()
    assert f"[serve] server-1 started (pid {pid})" in lines
    assert f"[server-1 {pid}] {READY_MARKER}" in lines
    assert f"[server-1 {pid}] drained" in lines
    assert lines[-1] == "[serve] stopped"


async def test_a_child_that_dies_is_started_again_with_a_growing_pause(monkeypatch) -> None:
    monkeypatch.setattr(supervisor_module, "RESTART_DELAY", 0.05)
    out = Output()
    supervisor = Supervisor([ChildSpec("worker", python("import sys; print('up'); sys.exit(3)"))], out=out)
    running = asyncio.ensure_future(supervisor.run(handle_signals=False))
    await wait_for(lambda: supervisor.restarts >= 2)
    await supervisor.stop()
    await running

    text = out.text()
    assert "exited with 3 after" in text
    assert "starting it again in 0.1s" in text  # the second pause: twice the first (0.05 s)
    assert text.count("worker started") >= 3


async def test_a_rolling_restart_starts_each_replacement_before_it_stops_the_old_server() -> None:
    out = Output()
    specs = [
        ChildSpec("server-1", python(SERVER), server=True),
        ChildSpec("server-2", python(SERVER), server=True),
    ]
    supervisor = Supervisor(specs, out=out)
    running = asyncio.ensure_future(supervisor.run(handle_signals=False))
    await wait_for(lambda: out.text().count(READY_MARKER) == 2)
    old = [supervisor.pid_of("server-1"), supervisor.pid_of("server-2")]

    await supervisor.rolling_restart()

    new = [supervisor.pid_of("server-1"), supervisor.pid_of("server-2")]
    assert None not in new and not set(new) & set(old)
    lines = out.text().splitlines()
    for name, before, after in zip(("server-1", "server-2"), old, new, strict=True):
        ready = lines.index(f"[{name} {after}] {READY_MARKER}")
        drained = lines.index(f"[{name} {before}] drained")
        assert ready < drained, "the old process stopped before its replacement was ready"
        assert f"[serve] {name} (pid {before}) exited with 0" in lines
    assert supervisor.restarts == 0  # replacements, not restarts after a death
    await supervisor.stop()
    await running


def test_more_than_one_process_on_the_in_memory_layer_is_refused() -> None:
    layers = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    with override_settings(CHANNEL_LAYERS=layers), pytest.raises(CommandError, match="set REDIS_URL"):
        call_command("realtime_serve", "--processes", "2", "--port", "0")
