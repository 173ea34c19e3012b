"""The scoring worker: unscored answers in, scores out (DESIGN §8).

It scores answers in batches (:func:`quiz.services.answers_score_pending`):
each batch marks its answers, moves the players' totals, writes every player's
score frame for the relay and marks the leaderboards of the games whose
standings moved, all in one transaction, so a crash neither loses nor repeats a
score. Ranks come from the worker's :class:`~quiz.ranking.RankBook` (O(log n) at
any crowd size). Leaderboards are not the worker's business: the coalescer of
the process broadcasts them when something changed (quiz.coalescer).

It runs inside the server process on the embedded default (woken by every
stored answer) and as ``python manage.py quiz_worker`` when the site is scaled
out (polling every ``WORKER_POLL`` seconds). A restart resumes with whatever is
still unscored.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from django.utils import timezone

from realtime.lifecycle import lifecycle

from . import services
from .batching import db_call
from .conf import quiz_settings
from .metrics import metrics
from .payloads import Score
from .ranking import RankBook

logger = logging.getLogger(__name__)


class ScoringWorker:
    """One scoring loop on the running event loop."""

    def __init__(self) -> None:
        self._ranks = RankBook()
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.scored_total = 0

    def wake(self) -> None:
        """New answers are waiting. Safe from any thread (services run in worker threads)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        """Score until cancelled: at once when woken, else every ``WORKER_POLL`` seconds."""
        self._loop = asyncio.get_running_loop()
        backoff = 0.1
        while True:
            try:
                scored = await self.score_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scoring failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if scored:
                continue
            self._wakeup.clear()
            # Not asyncio.wait_for: on Python 3.11 it loses a cancellation that
            # arrives as the event is set, and astop() would wait forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(quiz_settings.worker_poll):
                    await self._wakeup.wait()

    async def score_once(self) -> list[Score]:
        """Score one batch now; the scores of the answers it scored (tests, ``quiz_worker --once``).

        Raises:
            Exception: the batch's failure; nothing of it was scored.
        """
        try:
            scores = await db_call(self._score_pending)
        except BaseException:
            # The ranks may hold the rolled-back batch: read them again next time.
            self._ranks.clear()
            raise
        if scores:
            now = timezone.now()
            metrics.scored(len(scores), [now - score.received_at for score in scores])
            self.scored_total += len(scores)
        return scores

    def _score_pending(self) -> list[Score]:
        return services.answers_score_pending(limit=quiz_settings.worker_batch, ranks=self._ranks)


_worker: ScoringWorker | None = None

# The name of the in-process worker among the process's background services.
SERVICE = "quiz.scoring-worker"


def runs_in_process() -> bool:
    """The embedded default scores in the server process; scaled out, ``manage.py quiz_worker`` does."""
    return quiz_settings.worker == "inprocess"


async def run_in_process() -> None:
    """The background service (registered in :class:`quiz.apps.QuizConfig`): a fresh worker per loop."""
    global _worker
    _worker = ScoringWorker()
    await _worker.run()


def wake() -> None:
    if _worker is not None:
        _worker.wake()


async def astop() -> None:
    """Stop the in-process worker and wait until its last database call has returned."""
    await lifecycle.stop(SERVICE)
    # The worker's queries run in the quiz's database thread: a no-op queued
    # behind them returns once the last one is done.
    await db_call(lambda: None)
