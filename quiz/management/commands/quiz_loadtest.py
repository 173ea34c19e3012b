"""``quiz_loadtest``: a live game with N simulated players against a running server, verified.

    python manage.py quiz_loadtest --url http://127.0.0.1:8000 --players 2000 --questions 5

Phases, in order (each optional but the game):

1. join benchmark (``--join-bench SECONDS``): ``GET /healthz`` vs ``POST .../join``
   on the same connections, back to back;
2. overload (``--overload FACTOR``): joins offered at FACTOR × the configured
   ``QUIZ["JOIN_RATE"]``: only 201 and 429 may come back;
3. the game (``--players N``): N players join with backoff, connect over
   WebSocket (a refused or broken connect or reconnect is retried as the quiz
   pages retry it, :mod:`quiz.loadtest.reconnect`; the run says how many),
   answer K questions (half over WebSocket, half over HTTP), the
   host (an admin login) drives start/reveal/next/finish;
4. ranking micro-benchmarks (``--rank-bench``, ``--rank-db-players``), no server needed.

Then it verifies against the database through the ORM: the command must run
with the server's settings and database (same environment; it checks that the
game it played is there). It prints the figures and one PASS/FAIL line per
check, and exits with status 1 if any check failed (``--no-goals`` leaves the
performance goals out of the verdict).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sys
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from quiz.conf import quiz_settings
from quiz.loadtest import bench, cpu
from quiz.loadtest.game import GameConfig, GameRun, question_set, run_game
from quiz.loadtest.host import HostClient, HostError
from quiz.loadtest.report import Report
from quiz.loadtest.verify import verify_game
from quiz.models import Game, GameState, Player
from realtime.core.rates import parse_rate

HOST_USERNAME = "quiz-loadtest"


class Command(BaseCommand):
    help = (
        "Play a verified game with N simulated players against a running server; benchmark joins and ranks."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="The server (loopback only).")
        parser.add_argument("--players", type=int, default=100, help="Simulated players; 0 skips the game.")
        parser.add_argument("--questions", type=int, default=3)
        parser.add_argument("--code", help="Play this game (in the lobby) instead of creating one.")
        parser.add_argument("--time-limit", type=float, default=30.0, help="Of each generated question (s).")
        parser.add_argument(
            "--answer-window", type=float, default=5.0, help="Players answer uniformly within this (s)."
        )
        parser.add_argument("--ws-share", type=float, default=0.5, help="Share of answers over WebSocket.")
        parser.add_argument("--http-connections", type=int, default=128)
        parser.add_argument("--connect-concurrency", type=int, default=200)
        parser.add_argument("--host-user", help="A staff login; default: create one in the database.")
        parser.add_argument("--host-password")
        parser.add_argument("--join-bench", type=float, default=5.0, metavar="SECONDS", help="0 skips it.")
        parser.add_argument("--bench-connections", type=int, default=128)
        parser.add_argument(
            "--overload", type=float, default=0.0, metavar="FACTOR", help="e.g. 3; 0 skips it."
        )
        parser.add_argument("--overload-seconds", type=float, default=5.0)
        parser.add_argument(
            "--join-rate", help="The server's QUIZ JOIN_RATE (default: this process's settings), e.g. 200/s."
        )
        parser.add_argument("--rank-bench", type=int, default=0, metavar="PLAYERS", help="e.g. 1000000.")
        parser.add_argument("--rank-lookups", type=int, default=100_000)
        parser.add_argument(
            "--rank-db-players",
            type=int,
            default=0,
            metavar="PLAYERS",
            help="Time selectors.player_rank with this many rows in the configured database "
            "(point DATABASE_URL at a scratch one).",
        )
        parser.add_argument("--keep-rank-rows", action="store_true")
        parser.add_argument("--goal-join-ratio", type=float, default=0.6)
        parser.add_argument("--goal-p99", type=float, default=1.0, help="Answer→score p99 goal (s).")
        parser.add_argument("--goal-rank-ms", type=float, default=5.0)
        parser.add_argument(
            "--no-goals", action="store_true", help="Goals are reported but never fail the run."
        )
        parser.add_argument(
            "--server-pid", type=int, help="Report the server process's CPU per phase (Linux /proc)."
        )
        parser.add_argument("--reveal-pause", type=float, default=1.0)
        parser.add_argument("--seed", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        report = Report()
        run_id = secrets.token_hex(3)
        server_phases = options["players"] > 0 or options["join_bench"] > 0 or options["overload"] > 0
        if server_phases:
            self._server_phases(report, run_id, options)
        if options["rank_bench"] > 0:
            self.stderr.write(f"rank bench: ScoreIndex with {options['rank_bench']:,} players ...")
            bench.rank_bench(
                report,
                players=options["rank_bench"],
                lookups=options["rank_lookups"],
                seed=options["seed"],
                goal_ms=options["goal_rank_ms"],
            )
        if options["rank_db_players"] > 0:
            self.stderr.write(f"rank bench: database with {options['rank_db_players']:,} players ...")
            bench.rank_db_bench(
                report,
                players=options["rank_db_players"],
                seed=options["seed"],
                goal_ms=options["goal_rank_ms"],
                keep=options["keep_rank_rows"],
            )
        if options["no_goals"]:
            report.waive_goals()
        self.stdout.write(report.render())
        if not report.passed:
            sys.exit(1)

    # -- against the server ----------------------------------------------------

    def _server_phases(self, report: Report, run_id: str, options: dict[str, Any]) -> None:
        username, password = host_login(options)
        code = options["code"]
        time_limit = options["time_limit"]
        questions = options["questions"]
        if code:
            game = Game.objects.filter(code=code).select_related("question_set").first()
            if game is None:
                raise CommandError(f"No game {code} in this database (run with the server's settings).")
            if game.state != GameState.LOBBY:
                raise CommandError(f"Game {code} is {game.state}; it must be in the lobby.")
            available = game.question_set.questions.count()
            if questions > available:
                raise CommandError(f"Game {code} has only {available} questions.")
            time_limit = max(q.time_limit for q in game.question_set.questions.all())
            # A game nobody has joined yet is as good as one of our own for every check.
            fresh = not game.players.exists()
        else:
            fresh = True
        try:
            configured = parse_rate(options["join_rate"] or quiz_settings.join_rate).per_second
        except ValueError as error:
            raise CommandError(f"Join rate: {error}.") from None
        rng = random.Random(options["seed"])
        config = GameConfig(
            url=options["url"].rstrip("/"),
            players=options["players"],
            questions=questions,
            answer_window=options["answer_window"],
            ws_share=options["ws_share"],
            http_connections=options["http_connections"],
            connect_concurrency=options["connect_concurrency"],
            cache_ttl=quiz_settings.cache_ttl,
            reveal_pause=options["reveal_pause"],
            server_pid=options["server_pid"],
            seed=options["seed"],
        )

        async def main() -> dict[str, Any]:
            results: dict[str, Any] = {}
            host = HostClient(config.url)
            try:
                await host.login(username, password)
                set_id = None
                if not code or options["join_bench"] > 0 or options["overload"] > 0:
                    set_id = await host.import_questions(
                        question_set(max(questions, 1), time_limit=time_limit, rng=rng)
                    )
                if options["join_bench"] > 0:
                    self.stderr.write(f"join bench: {options['join_bench']:g} s per endpoint ...")
                    bench_code = await host.create_game(set_id, f"join bench {run_id}")
                    mark = cpu.snapshot(options["server_pid"])
                    results["join_bench"] = (
                        bench_code,
                        *await bench.join_bench(
                            url=config.url,
                            code=bench_code,
                            run_id=run_id,
                            duration=options["join_bench"],
                            connections=options["bench_connections"],
                        ),
                    )
                    results["join_bench_cpu"] = cpu.describe(mark, cpu.snapshot(options["server_pid"]))
                if options["overload"] > 0:
                    offered = configured * options["overload"]
                    self.stderr.write(
                        f"overload: {offered:g} joins/s for {options['overload_seconds']:g} s ..."
                    )
                    overload_code = await host.create_game(set_id, f"overload {run_id}")
                    mark = cpu.snapshot(options["server_pid"])
                    results["overload"] = (
                        overload_code,
                        *await bench.overload(
                            url=config.url,
                            code=overload_code,
                            run_id=run_id,
                            offered_rate=offered,
                            duration=options["overload_seconds"],
                            connections=max(options["bench_connections"], 256),
                        ),
                    )
                    results["overload_cpu"] = cpu.describe(mark, cpu.snapshot(options["server_pid"]))
                if config.players > 0:
                    game_code = code or await host.create_game(set_id, f"load test {run_id}")
                    self.stderr.write(
                        f"game {game_code}: {config.players} players, {questions} questions ..."
                    )
                    results["game"] = await run_game(
                        config, host=host, code=game_code, time_limit=time_limit, run_id=run_id
                    )
            finally:
                await host.close()
            return results

        try:
            results = _run(main())
        except HostError as error:
            raise CommandError(f"{error} (is the server at {config.url} using this database?)") from error
        except OSError as error:
            raise CommandError(f"cannot reach {config.url}: {error}") from error

        if "join_bench" in results:
            bench_code, before, joins, after, stats = results["join_bench"]
            bench.report_join_bench(
                report,
                before,
                joins,
                after,
                stats,
                stored=_stored(bench_code),
                ratio_goal=options["goal_join_ratio"],
            )
            report.figure("CPU, join bench", results["join_bench_cpu"])
        if "overload" in results:
            overload_code, result, offered = results["overload"]
            bench.report_overload(
                report,
                result,
                offered=offered,
                configured=configured,
                factor=options["overload"],
                stored=_stored(overload_code),
            )
            report.figure("CPU, overload", results["overload_cpu"])
        if "game" in results:
            run: GameRun = results["game"]
            verify_game(run, report, fresh_game=fresh, p99_goal=options["goal_p99"])


def host_login(options: dict[str, Any]) -> tuple[str, str]:
    """The staff login the host uses: ``--host-user``/``--host-password``, or one made in the database."""
    if options["host_user"]:
        if not options["host_password"]:
            raise CommandError("--host-user needs --host-password.")
        return options["host_user"], options["host_password"]
    # Set-up: a staff login of our own, in the server's database, with a fresh password.
    password = secrets.token_urlsafe(16)
    user, _ = get_user_model().objects.get_or_create(username=HOST_USERNAME)
    user.is_staff = True
    user.is_active = True
    user.set_password(password)
    user.save()
    return HOST_USERNAME, password


def _stored(code: str) -> set[int]:
    return set(Player.objects.filter(game__code=code).values_list("pk", flat=True))


def _run(coroutine: Any) -> Any:
    """Run on uvloop when it is installed: the load generator's own overhead stays low."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)
