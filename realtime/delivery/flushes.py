"""One loop callback per pass for every outbox that has frames to write.

An event fanned out to a thousand subscribers used to schedule a thousand
callbacks (``loop.call_soon``, one per outbox): a ``Handle`` each, a thousand
entries through the loop's ready queue, about 5 % of a steady run's samples.
:class:`FlushQueue` collects the outboxes that asked for a flush during a pass
and runs their flushes from one callback, each in its own connection's context,
in the order they asked.
"""

from __future__ import annotations

import asyncio
import contextvars
import weakref
from collections.abc import Callable


class FlushQueue:
    """The outboxes of one event loop waiting for their flush."""

    __slots__ = ("_loop", "_pending", "_scheduled", "__weakref__")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: list[tuple[Callable[[], None], contextvars.Context]] = []
        self._scheduled = False

    def add(self, flush: Callable[[], None], context: contextvars.Context) -> None:
        """Run ``flush`` in ``context`` on the loop's next pass (with the others asked for)."""
        self._pending.append((flush, context))
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._run)

    def _run(self) -> None:
        self._scheduled = False
        pending, self._pending = self._pending, []
        for flush, context in pending:
            try:
                context.run(flush)
            except Exception as error:  # as the loop treats a failing callback: report, go on
                self._loop.call_exception_handler(
                    {"message": "Exception in an outbox flush", "exception": error}
                )


_QUEUES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, FlushQueue] = weakref.WeakKeyDictionary()


def flush_queue(loop: asyncio.AbstractEventLoop) -> FlushQueue:
    """The loop's :class:`FlushQueue`, created on first use."""
    queue = _QUEUES.get(loop)
    if queue is None:
        queue = _QUEUES[loop] = FlushQueue(loop)
    return queue
