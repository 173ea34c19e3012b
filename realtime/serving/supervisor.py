"""Run a site's processes side by side, restart those that die, replace them one at a time.

The supervisor of ``manage.py realtime_serve``. It knows nothing of Django: it
starts child processes from their command lines, prefixes every line they write
with the child's name, and acts on signals:

- a child that exits while the site runs is started again: at once if it had
  run for ``STEADY_AFTER`` seconds (a server drained by its own ``SIGTERM``, a
  crash after hours), after a pause that doubles up to ``MAX_RESTART_DELAY``
  otherwise (a crash at start-up would spin);
- ``SIGHUP``: rolling restart. Each server in turn gets a replacement, which
  must say it is ready (a line holding ``READY_MARKER``) before the old one is
  sent ``SIGTERM`` and drains; then each companion (worker, relay) is stopped
  and started again;
- ``SIGTERM`` / ``SIGINT``: every child gets ``SIGTERM`` (servers drain); those
  still running after ``stop_timeout`` seconds get ``SIGKILL``.

Children run in sessions of their own: a terminal's Ctrl-C reaches the
supervisor only, which stops them in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import BinaryIO

# A server writes a line holding this once it accepts connections.
READY_MARKER = "realtime_serve: ready"
# A child that ran this long before exiting is restarted at once.
STEADY_AFTER = 10.0
RESTART_DELAY = 1.0
MAX_RESTART_DELAY = 30.0
# How long a replacement server may take to become ready during a rolling restart.
READY_TIMEOUT = 60.0


@dataclass(frozen=True)
class ChildSpec:
    """One process of the site: its name in the log, its command line, whether it serves."""

    name: str
    argv: Sequence[str]
    server: bool = False


@dataclass(eq=False)
class Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process
    started: float
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    output: asyncio.Task[None] | None = None
    # Set when the supervisor itself asked it to stop (no restart follows).
    retired: bool = False
    # Exits in a row, each before STEADY_AFTER: the pause before the next start doubles.
    quick_exits: int = 0


class Supervisor:
    """Starts ``specs``, keeps them running until told to stop (see the module's docstring)."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        *,
        pass_fds: Sequence[int] = (),
        env: dict[str, str] | None = None,
        out: BinaryIO | None = None,
        stop_timeout: float = 40.0,
    ) -> None:
        self.specs = list(specs)
        self.pass_fds = tuple(pass_fds)
        self.env = env
        self.out = out if out is not None else sys.stdout.buffer
        self.stop_timeout = stop_timeout
        self.children: dict[str, Child] = {}
        self.restarts = 0
        self._stopping = False
        self._rolling: asyncio.Task[None] | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._done = asyncio.Event()

    # -- running ---------------------------------------------------------------

    async def run(self, *, handle_signals: bool = True) -> None:
        """Start every child and supervise them until :meth:`stop` has finished."""
        loop = asyncio.get_running_loop()
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP, self.request_rolling_restart)
        for spec in self.specs:
            await self._start(spec)
        await self._done.wait()

    def request_stop(self) -> None:
        if not self._stopping:
            self._stopping = True
            self.log("stopping: SIGTERM to every process")
            asyncio.get_running_loop().create_task(self.stop())

    def request_rolling_restart(self) -> None:
        if self._stopping:
            return
        if self._rolling is not None and not self._rolling.done():
            self.log("a rolling restart is under way already")
            return
        self._rolling = asyncio.get_running_loop().create_task(self.rolling_restart())

    async def stop(self) -> None:
        """``SIGTERM`` to every child, ``SIGKILL`` to those left after ``stop_timeout``."""
        self._stopping = True
        if self._rolling is not None:
            self._rolling.cancel()
        # A child being started as this began is signalled by _start itself.
        await asyncio.sleep(0)
        children = list(self.children.values())
        for child in children:
            child.retired = True
            _signal(child, signal.SIGTERM)
        waits = [asyncio.ensure_future(child.process.wait()) for child in children]
        if waits:
            await asyncio.wait(waits, timeout=self.stop_timeout)
            for child in children:
                if child.process.returncode is None:
                    self.log(f"{child.spec.name} still running after {self.stop_timeout:.0f}s: SIGKILL")
                    _signal(child, signal.SIGKILL)
            await asyncio.gather(*waits)
        for child in children:
            if child.output is not None:
                await child.output
        await asyncio.gather(*list(self._watchers), return_exceptions=True)
        self.log("stopped")
        self._done.set()

    async def rolling_restart(self) -> None:
        """Replace every server, one at a time, then every companion."""
        self.log("rolling restart")
        for name in [spec.name for spec in self.specs if spec.server]:
            old = self.children.get(name)
            if old is None:
                continue
            new = await self._start(old.spec)
            try:
                await asyncio.wait_for(new.ready.wait(), READY_TIMEOUT)
            except TimeoutError:
                self.log(f"{name}: the replacement did not become ready; the old process keeps serving")
                new.retired = True
                _signal(new, signal.SIGTERM)
                continue
            old.retired = True
            _signal(old, signal.SIGTERM)
            await old.process.wait()
        for spec in [spec for spec in self.specs if not spec.server]:
            old = self.children.get(spec.name)
            if old is not None:
                old.retired = True
                _signal(old, signal.SIGTERM)
                await old.process.wait()
            await self._start(spec)
        self.log("rolling restart done")

    # -- children --------------------------------------------------------------

    async def _start(self, spec: ChildSpec, *, quick_exits: int = 0) -> Child:
        process = await asyncio.create_subprocess_exec(
            *spec.argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            pass_fds=self.pass_fds,
            env=self.env,
            start_new_session=True,
        )
        child = Child(spec=spec, process=process, started=time.monotonic(), quick_exits=quick_exits)
        self.children[spec.name] = child
        if self._stopping:
            child.retired = True
            _signal(child, signal.SIGTERM)
        child.output = asyncio.get_running_loop().create_task(self._copy_output(child))
        watcher = asyncio.get_running_loop().create_task(self._watch(child))
        self._watchers.add(watcher)
        watcher.add_done_callback(self._watchers.discard)
        self.log(f"{spec.name} started (pid {process.pid})")
        return child

    async def _copy_output(self, child: Child) -> None:
        assert child.process.stdout is not None
        prefix = f"[{child.spec.name} {child.process.pid}] ".encode()
        async for line in child.process.stdout:
            if READY_MARKER.encode() in line:
                child.ready.set()
            self.out.write(prefix + line if line.endswith(b"\n") else prefix + line + b"\n")
            self.out.flush()

    async def _watch(self, child: Child) -> None:
        code = await child.process.wait()
        if child.output is not None:
            with contextlib.suppress(Exception):
                await child.output
        if child.retired or self._stopping:
            self.log(f"{child.spec.name} (pid {child.process.pid}) exited with {code}")
            if self.children.get(child.spec.name) is child:
                del self.children[child.spec.name]
            return
        ran = time.monotonic() - child.started
        steady = ran >= STEADY_AFTER
        delay = 0.0 if steady else min(RESTART_DELAY * 2**child.quick_exits, MAX_RESTART_DELAY)
        self.log(
            f"{child.spec.name} (pid {child.process.pid}) exited with {code} after {ran:.1f}s; "
            f"starting it again in {delay:.1f}s"
        )
        await asyncio.sleep(delay)
        if self._stopping or self.children.get(child.spec.name) is not child:
            return
        self.restarts += 1
        await self._start(child.spec, quick_exits=0 if steady else child.quick_exits + 1)

    def log(self, message: str) -> None:
        self.out.write(f"[serve] {message}\n".encode())
        self.out.flush()

    def pid_of(self, name: str) -> int | None:
        child = self.children.get(name)
        return None if child is None else child.process.pid


def _signal(child: Child, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        child.process.send_signal(signum)


def servers(count: int, argv: Callable[[int], Sequence[str]]) -> list[ChildSpec]:
    """``count`` server specs named ``server-1`` … with ``argv(i)`` as each one's command line."""
    return [ChildSpec(name=f"server-{i}", argv=argv(i), server=True) for i in range(1, count + 1)]


def environment(extra: dict[str, str]) -> dict[str, str]:
    """This process's environment with ``extra`` and unbuffered Python output (lines arrive whole)."""
    return {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
