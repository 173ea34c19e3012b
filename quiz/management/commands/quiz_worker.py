"""``quiz_worker``: score answers, for a scaled-out site.

Run one beside the server processes when ``QUIZ["WORKER"]`` is ``"external"``
(the default with ``REDIS_URL``). Stop it at any time: what is unscored stays
unscored until the next start, and nothing is scored twice. The scores and the
leaderboards they move are written for ``realtime``'s relay (``manage.py
realtime_relay`` beside it) to publish.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from quiz import coalescer
from quiz.autopilot import Autopilot
from quiz.worker import ScoringWorker


class Command(BaseCommand):
    help = "Score quiz answers, broadcast the leaderboards they move, take automatic steps; until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Score what is pending, then exit.")

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        worker = ScoringWorker()
        if once:
            total = 0

            async def drain() -> None:
                nonlocal total
                while scored := await worker.score_once():
                    total += len(scored)
                await coalescer.flush()

            asyncio.run(drain())
            self.stdout.write(f"Scored {total} answer(s).")
            return
        self.stderr.write("quiz worker running; Ctrl-C to stop")

        async def run() -> None:
            # The leaderboards of the games this process scores go out from here,
            # and those a stopped process left stale; so do the games' automatic steps.
            await asyncio.gather(worker.run(), coalescer.coalescer.run(sweep=True), Autopilot().run())

        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(run())
