"""Draining a server process: its WebSockets sent elsewhere, nothing under way lost.

A process being restarted or stopped (``realtime_serve``, on ``SIGTERM``) stops
accepting connections first; then every WebSocket it holds is closed with 1001
"going away" once the operations it was handling are answered
(:meth:`~realtime.transport.connection.Connection.go_away`), and its client
reconnects, through the proxy, to a process still accepting. A connection
accepted just before the listening stopped is sent away as soon as it opens.

Like the connections it closes, the drain belongs to the services' event loop.
"""

from __future__ import annotations

import asyncio

from realtime.lifecycle import lifecycle
from realtime.presence.connections import Controlled, connections


class Drain:
    """Whether this process drains, and the connections it is sending away."""

    def __init__(self) -> None:
        self.active = False
        self.within = 0.0
        # Kept referenced until each connection has closed.
        self._leaving: set[asyncio.Task[None]] = set()

    def reset(self) -> None:
        self.active = False
        self.within = 0.0
        self._leaving = set()

    async def websockets(self, *, within: float) -> int:
        """Send every open WebSocket of this process away; returns how many there were.

        Each waits at most ``within`` seconds for its operations under way.
        """
        self.active, self.within = True, within
        held = connections.all()
        for connection in held:
            self.send_away(connection)
        while self._leaving:
            await asyncio.gather(*list(self._leaving), return_exceptions=True)
        return len(held)

    def send_away(self, connection: Controlled) -> None:
        """Close ``connection`` with "going away", in a task of its own."""
        task = asyncio.get_running_loop().create_task(connection.go_away(within=self.within))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)


drain = Drain()
lifecycle.on_new_loop("drain", drain.reset)
