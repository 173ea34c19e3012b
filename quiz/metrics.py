"""Prometheus metrics of the game: joins, answers, scoring lag, leaderboards.

=====================================  =========  ==================================================
metric                                 type       moves when
=====================================  =========  ==================================================
quiz_join_admitted_total               counter    a join passed admission control
quiz_join_throttled_total              counter    a join was refused with 429
quiz_answer_received_total             counter    an answer was stored (HTTP or WebSocket)
quiz_answer_scored_total               counter    the worker scored an answer
quiz_scoring_lag_seconds               histogram  an answer was scored: received_at → scored_at
quiz_leaderboard_broadcasts_total      counter    a game's leaderboard was written for the relay
=====================================  =========  ==================================================

Built on :class:`realtime.ops.metrics.MetricSet`: an injectable registry, and no-ops
without prometheus_client. ``/metrics`` (``realtime``) shows them with the rest.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.dispatch import receiver

from realtime.ops.metrics import MetricSet

from . import signals

# Answers are scored within a poll interval normally; a backlog shows as seconds.
LAG_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class QuizMetrics(MetricSet):
    def define(self) -> None:
        self.joins_admitted = self.counter("quiz_join_admitted", "Joins admitted by the rate limits.")
        self.joins_throttled = self.counter("quiz_join_throttled", "Joins refused with 429.")
        self.answers_received = self.counter("quiz_answer_received", "Answers stored, not yet scored.")
        self.answers_scored = self.counter("quiz_answer_scored", "Answers scored by the worker.")
        self.scoring_lag = self.histogram(
            "quiz_scoring_lag_seconds", "From an answer's arrival to its scoring.", (), LAG_BUCKETS
        )
        self.leaderboard_broadcasts = self.counter(
            "quiz_leaderboard_broadcasts", "Leaderboards written for a game's channel (quiz.coalescer)."
        )

    def join_admitted(self) -> None:
        self.joins_admitted.inc()

    def join_throttled(self) -> None:
        self.joins_throttled.inc()

    def answer_received(self) -> None:
        self.answers_received.inc()

    def scored(self, count: int, lags: Iterable[timedelta] = ()) -> None:
        """``count`` answers scored; ``lags``: their times from ``received_at`` to ``scored_at``."""
        self.answers_scored.inc(count)
        for lag in lags:
            self.scoring_lag.observe(max(0.0, lag.total_seconds()))

    def leaderboards(self, count: int) -> None:
        if count:
            self.leaderboard_broadcasts.inc(count)


metrics = QuizMetrics()


@receiver(signals.answer_received, dispatch_uid="quiz.metrics.answer_received")
def _count_answer(sender: Any, **kwargs: Any) -> None:
    # Answers arrive over HTTP and over WebSocket; both store through answer_submit.
    metrics.answer_received()
