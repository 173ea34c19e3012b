"""The autopilot: a game's automatic reveal and next, with no host page open (DESIGN §7).

A game created with ``auto_reveal`` has its answer revealed once the question's
time (and the answers' grace) is up; with ``auto_next`` the next question, or
the podium after the last one, follows that many seconds after each reveal.
Every transition writes when the game's next automatic step is due
(``Game.next_step_at``); the autopilot sleeps until the soonest one, takes the
due steps (:func:`quiz.services.games_step_due`, each a transition of its own
that locks the game, so a host's click and the autopilot never both win), and
sleeps again.

It runs where the scoring worker runs: in the server process on the embedded
default, beside ``manage.py quiz_worker`` when scaled out. A transition in its
own process wakes it (signal ``game_changed``); one in another process is seen
within ``AUTOPILOT_POLL`` seconds. A stopped process loses nothing: the steps
are rows, taken late by the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from django.utils import timezone

from realtime.lifecycle import lifecycle

from . import selectors, services
from .batching import db_call
from .conf import quiz_settings

logger = logging.getLogger(__name__)

# The name of the autopilot among the process's background services.
SERVICE = "quiz.autopilot"
# Seconds before trying again after a failed step (the database away).
RETRY_DELAY = 1.0


class Autopilot:
    """One loop taking the games' due automatic steps."""

    def __init__(self) -> None:
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.steps_taken = 0

    def wake(self) -> None:
        """A game changed: plan again now. Safe from any thread (services run in worker threads)."""
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        """Take due steps until cancelled."""
        self._loop = asyncio.get_running_loop()
        while True:
            self._wakeup.clear()
            try:
                wait = await self.step_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the autopilot's step failed; retrying in %.1fs", RETRY_DELAY)
                wait = RETRY_DELAY
            # Not asyncio.wait_for: on Python 3.11 it loses a cancellation that
            # arrives as the event is set, and stopping would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()

    async def step_once(self) -> float:
        """Take the steps due now; the seconds until the next one (at most ``AUTOPILOT_POLL``)."""
        moved = await db_call(services.games_step_due)
        self.steps_taken += len(moved)
        due = await db_call(selectors.games_next_step_at)
        poll = quiz_settings.autopilot_poll
        if due is None:
            return poll
        return min(poll, max(0.0, (due - timezone.now()).total_seconds()))


_autopilot: Autopilot | None = None


async def run_in_process() -> None:
    """The background service (registered in :class:`quiz.apps.QuizConfig`): one per loop."""
    global _autopilot
    _autopilot = Autopilot()
    await _autopilot.run()


def wake() -> None:
    if _autopilot is not None:
        _autopilot.wake()


async def astop() -> None:
    """Stop this process's autopilot and wait until its last database call has returned."""
    await lifecycle.stop(SERVICE)
    await db_call(lambda: None)
