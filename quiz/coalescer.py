"""Broadcast a game's leaderboard and host progress when they change, coalesced per game (DESIGN §8).

Changes come from every process: joins and answers in the server processes,
scores in the worker, transitions from the host's requests. Each marks the
game's feeds stale in its transaction (:func:`quiz.services.feeds_mark_stale`)
and, after the commit, tells the coalescer of its own process (signal ``feeds_changed``,
:meth:`FeedCoalescer.changed`). The coalescer calls
:func:`quiz.services.feed_broadcast` for that game, which publishes what is
stale at most once per ``LEADERBOARD_INTERVAL`` per feed and says when to come
back for the rest. So a crowd's changes cost one broadcast per interval, and a
game nobody changes costs nothing: no query, no publish, no timer.

It runs in every server process (a lifecycle service) and beside the scoring
worker of ``manage.py quiz_worker``. The one beside the worker (one per site)
starts by broadcasting what a stopped process left stale: its one query when
it starts; nothing polls.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from django.db import DatabaseError

from .batching import db_call
from .worker import runs_in_process

logger = logging.getLogger(__name__)

# The name of the coalescer among the process's background services.
SERVICE = "quiz.feeds"
# Seconds before a game whose broadcast failed (the database away) is tried again.
RETRY_DELAY = 1.0


class FeedCoalescer:
    """The games this process changed, each with the loop time its feeds are next due."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._due: dict[int, float] = {}

    def changed(self, game_ids: Iterable[int]) -> None:
        """Feeds of these games are stale (committed). Safe from any thread; a no-op where none runs."""
        loop = self._loop
        if loop is None or loop.is_closed():
            # No coalescer here (a management command): the feeds stay stale and
            # go out with the game's next change, or when a process starts.
            return
        try:
            loop.call_soon_threadsafe(self._note, list(game_ids))
        except RuntimeError:
            pass  # the loop closed meanwhile

    def _note(self, game_ids: list[int]) -> None:
        if self._loop is None or self._wakeup is None:
            return  # stopped since the note was sent: the feeds stay stale for the next start
        now = self._loop.time()
        for game_id in game_ids:
            # A game already waiting for its interval keeps its time.
            self._due.setdefault(game_id, now)
        self._wakeup.set()

    async def run(self, *, sweep: bool = False) -> None:
        """Broadcast due games until cancelled; with ``sweep``, first those left stale."""
        from . import selectors

        loop = asyncio.get_running_loop()
        wakeup = asyncio.Event()
        self._loop, self._wakeup, self._due = loop, wakeup, {}
        try:
            if sweep:
                self._note(await db_call(selectors.games_with_stale_feeds))
            while True:
                wakeup.clear()
                await self.broadcast_due()
                timeout = min(self._due.values()) - loop.time() if self._due else None
                if timeout is None or timeout > 0:
                    # Not asyncio.wait_for: on Python 3.11 it loses a cancellation
                    # that arrives as the event is set, and stop() would wait forever.
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await wakeup.wait()
        finally:
            if self._loop is loop:
                self._loop = self._wakeup = None

    async def broadcast_due(self) -> None:
        """Broadcast every game whose time has come; reschedule those that must wait."""
        from .services.feeds import feed_broadcast

        assert self._loop is not None
        now = self._loop.time()
        for game_id in [game_id for game_id, due in self._due.items() if due <= now]:
            del self._due[game_id]
            try:
                wait = await db_call(lambda game_id=game_id: feed_broadcast(game_id=game_id))
            except asyncio.CancelledError:
                raise
            except DatabaseError as error:
                # The database is away (a restart, a network cut): no bug to trace.
                logger.warning("broadcasting the feeds of game %s failed (%s); retrying", game_id, error)
                wait = RETRY_DELAY
            except Exception:
                logger.exception("broadcasting the feeds of game %s failed; retrying", game_id)
                wait = RETRY_DELAY
            if wait is not None:
                self._due[game_id] = self._loop.time() + wait


async def run_in_server() -> None:
    """The background service of a server process; the one that also scores sweeps."""
    await coalescer.run(sweep=runs_in_process())


async def flush() -> None:
    """Broadcast every stale feed now, waiting out the intervals (``quiz_worker --once``)."""
    from . import selectors
    from .services.feeds import feed_broadcast

    for game_id in await db_call(selectors.games_with_stale_feeds):
        # The wait is the feed's interval, known in advance: nothing to be woken by.
        while (wait := await db_call(lambda game_id=game_id: feed_broadcast(game_id=game_id))) is not None:  # noqa: ASYNC110
            await asyncio.sleep(wait)


coalescer = FeedCoalescer()
