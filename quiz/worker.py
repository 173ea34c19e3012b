"""The scoring worker: answers in, scores and leaderboards out (DESIGN §8).

It scores unscored answers in batches (:func:`quiz.services.answers_score_pending`,
idempotent and crash-safe), keeps each game's ranks in a :class:`ScoreIndex`
(O(log n) at any crowd size), sends ``answer_scored`` for every answer scored
(the receiver publishes it on the player's private channel), and broadcasts each
active game's leaderboard at most once per ``LEADERBOARD_INTERVAL``, only when
something changed.

It runs inside the server process on the embedded default and as
``python manage.py quiz_worker`` when the site is scaled out. A restart resumes
with whatever is still unscored.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.utils import timezone

import realtime
from realtime.lifecycle import lifecycle

from . import channels, payloads, selectors, services, signals
from .batching import db_call
from .conf import quiz_settings
from .metrics import metrics
from .models import Game, GameState, Player
from .ranking import ScoreIndex

logger = logging.getLogger(__name__)

# How long a finished game keeps being watched, for its final leaderboard.
FINISHED_GRACE = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class ScoredAnswer:
    answer_id: int
    player_id: int
    game_id: int
    game_code: str
    question_id: int
    correct: bool
    delta: int
    score: int
    rank: int
    players: int


def _score_pending() -> list[dict[str, Any]]:
    return services.answers_score_pending(limit=quiz_settings.worker_batch)


class ScoringWorker:
    """One scoring loop and one leaderboard loop, on the running event loop."""

    def __init__(self) -> None:
        self._ranks: dict[int, ScoreIndex] = {}
        self._players: dict[int, int] = {}
        self._fingerprints: dict[int, tuple[Any, ...]] = {}
        self._progress: dict[int, tuple[Any, ...]] = {}
        self._wakeup = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self.scored_total = 0

    def wake(self) -> None:
        """New answers are waiting. Safe from any thread (services run in worker threads)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wakeup.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        await asyncio.gather(self._score_loop(), self._leaderboard_loop())

    # -- scoring -------------------------------------------------------------

    async def _score_loop(self) -> None:
        backoff = 0.1
        while True:
            try:
                results = await db_call(_score_pending)
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("scoring failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            backoff = 0.1
            if results:
                await self._announce(results)
                continue
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), quiz_settings.worker_poll)
            except TimeoutError:
                pass

    async def score_once(self) -> list[ScoredAnswer]:
        """Score one batch now (tests and the management command's --once)."""
        return await self._announce(await db_call(_score_pending))

    async def _announce(self, results: list[dict[str, Any]]) -> list[ScoredAnswer]:
        scored: list[ScoredAnswer] = []
        if not results:
            return scored
        now = timezone.now()
        metrics.scored(len(results), [now - result.pop("received_at") for result in results])
        fresh = await self._load_ranks({r["game_id"] for r in results if r["game_id"] not in self._ranks})
        # A player with several answers in one batch: their total moved once.
        moved: dict[int, tuple[int, int, int]] = {}  # player → (game, new total, delta of the batch)
        for result in results:
            game_id, total, delta = moved.get(result["player_id"], (result["game_id"], result["score"], 0))
            moved[result["player_id"]] = (game_id, total, delta + result["delta"])
        for game_id, total, delta in moved.values():
            if game_id in fresh or not delta:
                continue
            index = self._ranks[game_id]
            if total - delta > 0:
                index.remove(total - delta)
            index.add(total)
        for result in results:
            game_id = result["game_id"]
            scored.append(
                ScoredAnswer(
                    **result,
                    rank=self._ranks[game_id].rank(result["score"]),
                    players=self._players.get(game_id, 0),
                )
            )
        self.scored_total += len(scored)
        # Every player's score goes out at once, not one after another.
        await asyncio.gather(
            *(signals.answer_scored.asend(sender=ScoredAnswer, result=item) for item in scored)
        )
        return scored

    async def _load_ranks(self, game_ids: set[int]) -> set[int]:
        """Build rank indexes from the database (which already holds this batch)."""

        def load() -> dict[int, list[int]]:
            loaded = {}
            for game_id in game_ids:
                loaded[game_id] = list(
                    Player.objects.filter(game_id=game_id, score__gt=0).values_list("score", flat=True)
                )
                self._players[game_id] = selectors.player_count(game_id=game_id)
            return loaded

        if not game_ids:
            return set()
        for game_id, scores in (await db_call(load)).items():
            index = ScoreIndex(max(scores, default=0) + 1)
            for score in scores:
                index.add(score)
            self._ranks[game_id] = index
        return game_ids

    # -- leaderboards --------------------------------------------------------

    async def _leaderboard_loop(self) -> None:
        while True:
            await asyncio.sleep(quiz_settings.leaderboard_interval)
            try:
                await self.broadcast_leaderboards()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("leaderboard broadcast failed")

    async def broadcast_leaderboards(self) -> int:
        """Publish the leaderboard of every active game whose standings changed."""
        boards, progress = await db_call(self._changed_leaderboards)
        for code, payload in boards:
            await realtime.apublish(channels.leaderboard_channel(code), [payload])
        for code, payload in progress:
            await realtime.apublish(channels.host_channel(code), [payload])
        metrics.leaderboards(len(boards))
        return len(boards)

    def _changed_leaderboards(
        self,
    ) -> tuple[list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
        """Leaderboards whose standings changed, and host progress (answer counts) that changed."""
        recent = timezone.now() - FINISHED_GRACE
        games = Game.objects.filter(state__in=[GameState.LOBBY, GameState.QUESTION, GameState.REVEAL]) | (
            Game.objects.filter(state=GameState.FINISHED, updated_at__gte=recent)
        )
        changed: list[tuple[str, dict[str, Any]]] = []
        progress: list[tuple[str, dict[str, Any]]] = []
        for game in games:
            final = game.state == GameState.FINISHED
            payload = selectors.leaderboard_payload(game=game, final=final)
            self._players[game.pk] = payload["players"]
            counts = (game.current_question_id, payload["players"], payload["answered"])
            if self._progress.get(game.pk) != counts:
                # The host's live answer count goes to staff pages only.
                self._progress[game.pk] = counts
                progress.append((game.code, payloads.progress(game, payload["players"], payload["answered"])))
            fingerprint = (
                game.state,
                game.current_question_id,
                payload["players"],
                # Not the answered count: it changes with every answer and would
                # send the board to every player several times a second.
                str(payload["top"]),
            )
            if self._fingerprints.get(game.pk) == fingerprint:
                continue
            self._fingerprints[game.pk] = fingerprint
            changed.append((game.code, payload))
        return changed, progress


_worker: ScoringWorker | None = None

# The name of the in-process worker among the process's background services.
SERVICE = "quiz.scoring-worker"


def get_worker() -> ScoringWorker:
    global _worker
    if _worker is None:
        _worker = ScoringWorker()
    return _worker


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
