"""``quiz`` settings: one ``QUIZ`` dict read lazily, like ``realtime.conf``."""

from __future__ import annotations

from typing import Any

from django.conf import settings

DEFAULTS: dict[str, Any] = {
    # Admission control for joins (DESIGN §8): a global rate shared by every
    # process through the cache, and a per-client rate. Beyond either: 429.
    # Rates as in REALTIME: "2000/s", "3/m", "5/10s", "0.5/s" (quiz.E001).
    "JOIN_RATE": "2000/s",
    "JOIN_RATE_PER_CLIENT": "20/s",
    # Joins one process works on at once; beyond: an immediate 429.
    "JOIN_MAX_IN_FLIGHT": 256,
    # Seconds of network slack after a question's deadline.
    "ANSWER_GRACE": 1.0,
    # "inprocess": the server scores answers itself (the embedded default);
    # "external": `manage.py quiz_worker` does (several server processes).
    "WORKER": "inprocess",
    "WORKER_BATCH": 500,
    # Seconds between polls for new answers; the in-process worker is also woken
    # by each answer, so this matters only to `quiz_worker`.
    "WORKER_POLL": 0.25,
    # Seconds between two broadcasts of a game's leaderboard (and of its host
    # progress): at most 2 a second by default, and none while nothing changes
    # (quiz.coalescer).
    "LEADERBOARD_INTERVAL": 0.5,
    "LEADERBOARD_SIZE": 10,
    # The longest the autopilot (automatic reveal and next, per game) sleeps before
    # looking for steps planned by another process; its own process wakes it at once.
    "AUTOPILOT_POLL": 1.0,
    # Seconds read-heavy endpoints are cached (server and HTTP).
    "CACHE_TTL": 1.0,
    # Realtime namespace of the game's channels.
    "NAMESPACE": "quiz",
}


class QuizSettings:
    def _get(self, name: str) -> Any:
        return (getattr(settings, "QUIZ", None) or {}).get(name, DEFAULTS[name])

    @property
    def join_rate(self) -> str:
        return str(self._get("JOIN_RATE"))

    @property
    def join_rate_per_client(self) -> str:
        return str(self._get("JOIN_RATE_PER_CLIENT"))

    @property
    def join_max_in_flight(self) -> int:
        return int(self._get("JOIN_MAX_IN_FLIGHT"))

    @property
    def answer_grace(self) -> float:
        return float(self._get("ANSWER_GRACE"))

    @property
    def worker(self) -> str:
        return str(self._get("WORKER"))

    @property
    def worker_batch(self) -> int:
        return int(self._get("WORKER_BATCH"))

    @property
    def worker_poll(self) -> float:
        return float(self._get("WORKER_POLL"))

    @property
    def leaderboard_interval(self) -> float:
        return float(self._get("LEADERBOARD_INTERVAL"))

    @property
    def leaderboard_size(self) -> int:
        return int(self._get("LEADERBOARD_SIZE"))

    @property
    def autopilot_poll(self) -> float:
        return float(self._get("AUTOPILOT_POLL"))

    @property
    def cache_ttl(self) -> float:
        return float(self._get("CACHE_TTL"))

    @property
    def namespace(self) -> str:
        return str(self._get("NAMESPACE"))


quiz_settings = QuizSettings()
