"""Background services of a server process, started once per event loop.

Every long-lived task of ``realtime`` and of the apps built on it (the
keep-alive timer, the channel-layer bridge, the dashboard sampler, the quiz's
scoring worker, the on-commit relay) registers here once, from its app's
``AppConfig.ready()``. The first WebSocket connection or HTTP request a process
serves on an event loop starts them all (:func:`ensure_started`), so a project
needs no ASGI wrapper and no lifespan support from its server (daphne has none).

A new event loop (tests run one per test; ``async_to_sync`` runs a private one
in a worker thread) takes over only once the loop that owns the services has
stopped: whatever belonged to the old loop is cancelled and each owner of
per-loop state resets it (:meth:`Lifecycle.on_new_loop`) before the services
start again on the new loop. While the owner is running, another loop leaves it
alone.

A service that fails is logged and restarted after a short pause; one that
returns has finished its work (a service that does not apply to this
configuration returns at once).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from realtime.ops.logs import background_context

logger = logging.getLogger(__name__)

# Pause before a failed service runs again; doubles up to MAX_RESTART_DELAY.
RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0


def _always() -> bool:
    return True


@dataclass(frozen=True, slots=True)
class Service:
    """A named long-lived coroutine and the setting that decides whether it runs here."""

    name: str
    run: Callable[[], Awaitable[None]]
    enabled: Callable[[], bool] = _always


class Lifecycle:
    """The registry of a process's background services, and the loop they run on."""

    def __init__(self) -> None:
        self._services: dict[str, Service] = {}
        self._loop_hooks: dict[str, Callable[[], None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def register(
        self, name: str, run: Callable[[], Awaitable[None]], *, enabled: Callable[[], bool] = _always
    ) -> None:
        """Add a service; registering a name again replaces it (``ready()`` may run twice)."""
        self._services[name] = Service(name, run, enabled)

    def on_new_loop(self, name: str, reset: Callable[[], None]) -> None:
        """Call ``reset`` whenever the services move to a new event loop, before they start."""
        self._loop_hooks[name] = reset

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The event loop the services run on, once started."""
        return self._loop

    def owned_elsewhere(self) -> bool:
        """True when the services belong to another loop that is still running.

        Sync code in a thread of its own runs a private loop (``async_to_sync``):
        work that touches sockets must then go to the owner loop.
        """
        owner = self._loop
        if owner is None or owner.is_closed() or not owner.is_running():
            return False
        try:
            return owner is not asyncio.get_running_loop()
        except RuntimeError:
            return True

    def ensure_started(self) -> None:
        """Start every enabled service on the running loop, once per loop.

        Cheap enough for every connection and request: after the first call on a
        loop it compares one reference.
        """
        loop = asyncio.get_running_loop()
        if self._loop is loop or self.owned_elsewhere():
            return
        self._abandon()
        self._loop = loop
        for reset in list(self._loop_hooks.values()):
            reset()
        # Process-wide tasks log with no connection's or request's id. Each gets
        # a context of its own: a context variable one sets (asgiref's
        # deadlock guard around a thread-sensitive call, say) is not the others'.
        context = background_context()
        for service in list(self._services.values()):
            if service.enabled():
                self._tasks[service.name] = loop.create_task(
                    self._supervise(service), name=f"realtime:{service.name}", context=context.copy()
                )

    def _abandon(self) -> None:
        """Cancel what the previous loop ran (if that loop can still take a cancellation)."""
        for task in self._tasks.values():
            if not task.done() and not task.get_loop().is_closed():
                task.cancel()
        self._tasks = {}

    @property
    def running(self) -> tuple[str, ...]:
        """Names of the services whose task is alive on the current loop."""
        return tuple(name for name, task in self._tasks.items() if not task.done())

    async def stop(self, *names: str) -> None:
        """Cancel this loop's services (the named ones, or all) and wait until they have ended."""
        loop = asyncio.get_running_loop()
        chosen = [name for name in self._tasks if not names or name in names]
        tasks = [self._tasks.pop(name) for name in chosen]
        if not names:
            self._loop = None
        tasks = [task for task in tasks if task.get_loop() is loop]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _supervise(self, service: Service) -> None:
        delay = RESTART_DELAY
        while True:
            try:
                await service.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("background service %s failed; restarting in %.1fs", service.name, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RESTART_DELAY)


lifecycle = Lifecycle()
