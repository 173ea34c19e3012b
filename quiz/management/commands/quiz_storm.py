"""``quiz_storm``: joins offered at 2×, 5× and 10× what the server can take, then a crowd.

    python manage.py quiz_storm --url http://127.0.0.1:8000

Phases, against a running server (loopback only), figures as ratios measured in
the same run (:mod:`quiz.loadtest.storm`):

1. ``GET /healthz`` one at a time: the latency of a request that waits for nothing;
2. capacity: closed loops of joins at a few concurrencies (``--capacity-concurrency``),
   each below the front door's ``MAX_IN_FLIGHT``, so the in-flight limit never
   throttles the reference: the best level's admitted joins/s with no overload;
3. storms: for each ``--factors`` F, F × capacity joins/s for ``--storm-seconds``,
   open loop from ``--processes`` load-generator processes (one falls behind its
   own schedule on a busy machine), ``--addresses`` loopback addresses, no
   retries, a ``--timeout`` client timeout; each request's latency counts from
   when the schedule meant to send it, and is split into the generator's own
   lateness, connecting and the server's answer;
4. crowd: ``--crowd`` players at once, backoff with jitter honouring
   ``Retry-After``, each with its own ``Idempotency-Key``;
5. with two or more ``--url`` (processes sharing Redis): ``--global-factor`` ×
   the configured ``QUIZ["JOIN_RATE"]`` for ``--global-seconds``, split across
   them; the admitted rate must be the configured one, ±5 %.

It then compares each phase's 201s with the players in the database (run it
with the server's settings and database), prints figures and PASS/FAIL lines,
and exits 1 if a check failed (``--no-goals``: the performance goals never fail it).
"""

from __future__ import annotations

import asyncio
import os
import random
import secrets
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from quiz.conf import quiz_settings
from quiz.loadtest import storm
from quiz.loadtest.game import question_set
from quiz.loadtest.host import HostClient
from quiz.loadtest.report import Report, rate
from quiz.models import Player
from realtime.core.rates import parse_limit

from .quiz_loadtest import _run, host_login


class Command(BaseCommand):
    help = "Offer joins at several times the server's measured capacity, then a crowd; verified."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", action="append", help="A server (repeat for several processes).")
        parser.add_argument("--factors", default="2,5,10", help="Overload factors of the measured capacity.")
        parser.add_argument("--capacity-seconds", type=float, default=3.0, help="Seconds per level.")
        parser.add_argument(
            "--capacity-concurrency",
            default="4,8,16,32",
            help="Closed loops of each capacity level, each below REALTIME FRONT_DOOR MAX_IN_FLIGHT.",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=2,
            help="Load-generator processes sharing each open-loop storm's schedule.",
        )
        parser.add_argument("--nice", type=int, default=0, help="Add this to the command's own niceness.")
        parser.add_argument("--storm-seconds", type=float, default=5.0)
        parser.add_argument("--timeout", type=float, default=5.0, help="Client timeout of each request (s).")
        parser.add_argument("--addresses", type=int, default=500, help="Loopback client addresses.")
        parser.add_argument(
            "--fresh-connections",
            action="store_true",
            help="Every request on a new TCP connection (default: one keep-alive connection per address).",
        )
        parser.add_argument("--crowd", type=int, default=2000, help="Players joining at once; 0 skips it.")
        parser.add_argument("--crowd-deadline", type=float, default=180.0)
        parser.add_argument("--global-factor", type=float, default=3.0)
        parser.add_argument("--global-seconds", type=float, default=10.0)
        parser.add_argument("--host-user")
        parser.add_argument("--host-password")
        parser.add_argument("--goal-refusal-ratio", type=float, default=5.0)
        parser.add_argument("--goal-admitted-p99", type=float, default=1.0)
        parser.add_argument("--goal-goodput", type=float, default=0.8)
        parser.add_argument("--no-goals", action="store_true")
        parser.add_argument("--seed", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        urls = [url.rstrip("/") for url in options["url"] or ["http://127.0.0.1:8000"]]
        try:
            factors = [float(factor) for factor in options["factors"].split(",") if factor.strip()]
        except ValueError:
            raise CommandError("--factors: numbers separated by commas, e.g. 2,5,10.") from None
        try:
            concurrencies = [int(n) for n in options["capacity_concurrency"].split(",") if n.strip()]
        except ValueError:
            raise CommandError("--capacity-concurrency: whole numbers separated by commas.") from None
        error = storm.capacity_levels_error(concurrencies)
        if error is not None:
            raise CommandError(
                f"--capacity-concurrency: {error}: more loops than the front door lets in at once "
                "would measure its limit, not the server."
            )
        options["capacity_concurrency"] = concurrencies
        if options["nice"]:
            os.nice(options["nice"])
        username, password = host_login(options)
        run_id = secrets.token_hex(3)
        report = Report()
        try:
            results = _run(self._phases(urls, factors, run_id, username, password, options))
        except OSError as error:
            raise CommandError(f"cannot reach {urls}: {error}") from error
        self._report(report, results, urls, options)
        if options["no_goals"]:
            report.waive_goals()
        self.stdout.write(report.render())
        if not report.passed:
            sys.exit(1)

    async def _phases(
        self, urls: list[str], factors: list[float], run_id: str, username: str, password: str, options: Any
    ) -> dict[str, Any]:
        results: dict[str, Any] = {"codes": {}}
        keepalive = not options["fresh_connections"]
        targets = [
            storm.Target(urls[:1], options["addresses"], keepalive=keepalive),
            storm.Target(urls, options["addresses"], keepalive=keepalive),
        ]
        one, every = targets
        host = HostClient(urls[0])
        try:
            await host.login(username, password)
            set_id = await host.import_questions(question_set(1, time_limit=30.0, rng=random.Random(0)))

            async def game(phase: str) -> str:
                code = await host.create_game(set_id, f"storm {phase} {run_id}")
                results["codes"][phase] = code
                return code

            self.stderr.write("healthz, unloaded ...")
            results["healthz"] = await storm.healthz_unloaded(urls[0])
            self.stderr.write(
                f"capacity: {options['capacity_seconds']:g} s of closed-loop joins at each of "
                f"{options['capacity_concurrency']} loops ..."
            )
            results["capacity"] = await storm.best_capacity(
                one,
                await game("capacity"),
                run_id,
                options["capacity_seconds"],
                options["capacity_concurrency"],
            )
            capacity_rate = rate(results["capacity"].statuses[201], results["capacity"].seconds)
            if capacity_rate <= 0:
                raise CommandError(f"no join was admitted while measuring capacity: {results['capacity']}")
            results["storms"] = []
            for factor in factors:
                self.stderr.write(f"storm: {factor:g} × {capacity_rate:.0f} joins/s ...")
                await asyncio.sleep(2.0)  # the previous phase's backlog drains first
                results["storms"].append(
                    await storm.storm_in_processes(
                        one,
                        options["processes"],
                        await game(f"{factor:g}×"),
                        run_id,
                        factor=factor,
                        capacity_rate=capacity_rate,
                        seconds=options["storm_seconds"],
                        client_timeout=options["timeout"],
                    )
                )
            if options["crowd"] > 0:
                self.stderr.write(f"crowd: {options['crowd']} players at once ...")
                await asyncio.sleep(2.0)
                results["crowd"] = await storm.crowd(
                    every,
                    await game("crowd"),
                    run_id,
                    players=options["crowd"],
                    client_timeout=options["timeout"],
                    deadline=options["crowd_deadline"],
                    seed=options["seed"],
                )
            if len(urls) > 1:
                configured = parse_limit(quiz_settings.join_rate).rate.per_second
                self.stderr.write(
                    f"global rate: {options['global_factor']:g} × {configured:g}/s on {urls} ..."
                )
                await asyncio.sleep(2.0)
                results["global"] = await storm.storm_in_processes(
                    every,
                    options["processes"],
                    await game("global"),
                    run_id,
                    factor=options["global_factor"],
                    capacity_rate=configured,
                    seconds=options["global_seconds"],
                    client_timeout=options["timeout"],
                )
                results["configured"] = configured
        finally:
            await host.close()
            for target in targets:
                await target.close()
        return results

    def _report(self, report: Report, results: dict[str, Any], urls: list[str], options: Any) -> None:
        codes = results["codes"]
        stored = {phase: _players(code) for phase, code in codes.items()}
        storm.report_storms(
            report,
            healthz=results["healthz"],
            base=results["capacity"],
            storms=results["storms"],
            stored=stored,
            goals={
                "refusal_p99_ratio": options["goal_refusal_ratio"],
                "admitted_p99": options["goal_admitted_p99"],
                "goodput": options["goal_goodput"],
            },
        )
        if "crowd" in results:
            crowd = results["crowd"]
            hashes = dict(
                Player.objects.filter(game__code=codes["crowd"]).values_list("nickname", "token_hash")
            )
            storm.report_crowd(report, crowd, stored["crowd"], storm.tokens_match(hashes, crowd.tokens))
        if "global" in results:
            storm.report_global(
                report, results["global"], configured=results["configured"], servers=len(urls), tolerance=0.05
            )


def _players(code: str) -> dict[str, int]:
    return dict(Player.objects.filter(game__code=code).values_list("nickname", "pk"))
