"""A server process of ``realtime_serve --server uvicorn``: uvicorn on an inherited socket, drains on SIGTERM.

The same contract as :mod:`realtime.serving.server` (daphne): it accepts on the
listening socket the supervisor opened, says it is ready with
``READY_MARKER``, and on ``SIGTERM`` (or ``SIGINT``) stops accepting, closes
every WebSocket with 1001 "going away" once its operations are answered, lets
every HTTP request run to its response (uvicorn's own graceful shutdown) and
stops the background services, all within the drain timeout.

WebSockets are served by uvicorn's ``websockets-sansio`` protocol
(:data:`WEBSOCKET_PROTOCOL`), not by uvicorn's default (the ``websockets``
library's legacy protocol), which keeps several asyncio events, tasks and a
stream reader per connection: about 5 KiB more per idle connection
(docs/BENCHMARKS.md, "Idle memory and connects"). Its module is imported before
the application, so the server tuning and the direct writes see it.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import socket
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn

from realtime.lifecycle import lifecycle
from realtime.serving.supervisor import READY_MARKER
from realtime.transport.drain import drain

logger = logging.getLogger(__name__)

# uvicorn's name for the WebSocket protocol every connection is served with.
WEBSOCKET_PROTOCOL = "websockets-sansio"
# The module defining it (uvicorn.config.WS_PROTOCOLS).
WEBSOCKET_MODULE = "uvicorn.protocols.websockets.websockets_sansio_impl"
# The HTTP protocol (uvicorn[standard]'s httptools), whose refusals the front door answers.
HTTP_PROTOCOL = "httptools"
HTTP_MODULE = "uvicorn.protocols.http.httptools_impl"


def serve_uvicorn_on_fd(load_application: Callable[[], Any], fd: int, *, drain_timeout: float) -> bool:
    """Serve the application ``load_application`` returns on the listening socket ``fd`` until drained."""
    # The protocols' modules first: the application's server tuning and front door
    # (realtime.transport.server_tuning, .uvicorn_door) look for the modules loaded.
    importlib.import_module(WEBSOCKET_MODULE)
    importlib.import_module(HTTP_MODULE)
    config = uvicorn.Config(
        load_application(),
        http=HTTP_PROTOCOL,
        ws=WEBSOCKET_PROTOCOL,
        # Django's ASGI handler has no lifespan support; the services start with the first request.
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=max(int(drain_timeout), 1),
    )
    server = DrainingServer(config, drain_timeout=drain_timeout)
    # The inherited socket keeps its family (uvicorn's own fd option assumes a UNIX socket).
    listener = socket.socket(fileno=fd)
    server.run(sockets=[listener])
    return server.started


class DrainingServer(uvicorn.Server):
    """A ``uvicorn.Server`` whose first stop signal drains the WebSockets before uvicorn's own shutdown."""

    def __init__(self, config: uvicorn.Config, *, drain_timeout: float) -> None:
        super().__init__(config)
        self.drain_timeout = drain_timeout
        self.started = False
        self._draining: asyncio.Task[None] | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if not self.should_exit:
            self.started = True
            # Straight to stdout: the supervisor waits for this line, whatever the log settings.
            sys.stdout.write(f"{READY_MARKER} (pid {os.getpid()})\n")
            sys.stdout.flush()

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining is None and self.started and not self.should_exit:
            # A signal handler runs on the loop's thread; uvicorn's main loop wakes every 0.1 s.
            self._draining = asyncio.get_event_loop().create_task(self._drain())
            return
        # A second signal, or one before the server started: uvicorn's own (SIGINT then forces the exit).
        super().handle_exit(sig, frame)

    async def _drain(self) -> None:
        for listening in self.servers:
            listening.close()
        logger.info("draining: no longer accepting connections")
        sent_away = await drain.websockets(within=self.drain_timeout)
        logger.info("draining: %d websockets closed with 1001 going away", sent_away)
        # Then uvicorn's shutdown: idle HTTP connections closed, requests under way answered.
        self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets=sockets)
        await lifecycle.stop()
