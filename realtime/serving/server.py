"""One server process of ``realtime_serve``: daphne on an inherited listening socket, drained on SIGTERM.

The supervisor opens the site's socket once and hands it to every server
process by file descriptor (daphne's ``fd:`` endpoint): the processes share one
accept queue. When one stops accepting, the connections waiting in that queue
go to the others; with ``SO_REUSEPORT`` each process would own a queue of its
own, and the connections waiting in the queue of a process that closes it are
reset. The socket also outlives every server process, so even a site of one
process refuses nothing while its process is replaced: clients wait in the
queue for the new one.

``SIGTERM`` (or ``SIGINT``) drains the process, in this order:

1. it stops accepting (the listening port is closed in this process only);
2. every WebSocket is closed with 1001 "going away" once its operations under
   way are answered (:mod:`realtime.transport.drain`);
3. it waits until every connection it accepted has ended: HTTP requests run to
   their response, so a join or an answer waiting for its group commit
   (``quiz.batching``) is committed and answered;
4. its background services stop, then daphne.

Each step waits at most the drain timeout in all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from realtime.lifecycle import lifecycle
from realtime.serving.supervisor import READY_MARKER
from realtime.transport.drain import drain

logger = logging.getLogger(__name__)

# How often a draining process looks whether its connections have ended.
DRAIN_POLL = 0.05
# A kept-alive HTTP connection idle this long while the process drains is closed.
IDLE_HTTP = 0.5


def serve_on_fd(application: Any, fd: int, *, drain_timeout: float) -> bool:
    """Serve ``application`` on the listening socket ``fd`` until drained; False if it could not start."""
    # Importing daphne's server installs Twisted's asyncio reactor: before anything imports the reactor.
    from daphne.server import Server  # type: ignore[import-untyped]
    from twisted.internet import reactor

    def ready() -> None:
        # Written straight to stdout: the supervisor waits for this line, whatever the log settings.
        sys.stdout.write(f"{READY_MARKER} (pid {os.getpid()})\n")
        sys.stdout.flush()

    server = Server(
        application=application,
        # Twisted's fd endpoint adopts IPv4 sockets (it reads no address family
        # from the string): realtime_serve listens on IPv4, behind the proxy.
        endpoints=[f"fd:fileno={fd}"],
        # Twisted's own handlers would stop the reactor at once: SIGTERM drains instead.
        signal_handlers=False,
        ready_callable=ready,
        websocket_timeout=86400,
    )
    loop: asyncio.AbstractEventLoop = reactor._asyncioEventloop
    draining: list[asyncio.Task[None]] = []

    def on_signal() -> None:
        if not draining:
            draining.append(loop.create_task(_drain(reactor, drain_timeout)))

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal)
    server.run()
    return not server.abort_start


def _close_idle_http(selectables: list[Any], idle_since: dict[Any, float], now: float) -> None:
    """Close the kept-alive HTTP connections that have waited for no response for ``IDLE_HTTP``.

    A connection accepted a moment ago may not have sent its request yet: only
    one seen idle for a while is closed. A client that sends its next request
    on it just as it closes sees the close instead, like on any kept-alive
    connection its server closes; behind nginx (``deploy/nginx``: no kept-alive
    upstream connections) none is ever idle.
    """
    from twisted.web import http

    for selectable in selectables:
        protocol = getattr(selectable, "protocol", None)
        channel = getattr(protocol, "_channel", protocol)
        if not isinstance(channel, http.HTTPChannel) or channel.requests:
            idle_since.pop(selectable, None)
        elif now - idle_since.setdefault(selectable, now) >= IDLE_HTTP:
            selectable.loseConnection()


async def _drain(reactor: Any, seconds: float) -> None:
    from twisted.internet import tcp

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    ports: list[Any] = [item for item in reactor.getReaders() if isinstance(item, tcp.Port)]
    for port in ports:
        port.stopListening()
    logger.info("draining: no longer accepting connections")
    sent_away = await drain.websockets(within=max(deadline - loop.time(), 0.0))
    logger.info("draining: %d websockets closed with 1001 going away", sent_away)

    def accepted() -> list[Any]:
        selectables = {*reactor.getReaders(), *reactor.getWriters()}
        return [item for item in selectables if isinstance(item, tcp.Server)]

    idle_since: dict[Any, float] = {}
    while accepted() and loop.time() < deadline:
        _close_idle_http(accepted(), idle_since, loop.time())
        await asyncio.sleep(DRAIN_POLL)
    left = accepted()
    if left:
        logger.warning("draining: %d connections still open after %.0fs; stopping anyway", len(left), seconds)
    else:
        logger.info("draining: every connection ended")
    await lifecycle.stop()
    reactor.stop()
