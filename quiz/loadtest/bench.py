"""Benchmarks beside the game: joins vs a trivial endpoint, overload, and ranking.

- :func:`join_bench` (async, against the server): closed loops of ``GET /healthz``
  (the project's trivial async view) and ``POST .../join`` on the same
  connections, back to back, so admitted joins/s compares with the server's
  own ceiling in the same run.
- :func:`overload` (async): an open loop offering ``factor ×`` the configured
  join rate; only 201 and 429 may come back.
- :func:`rank_bench` (sync, no server): :class:`quiz.ranking.ScoreIndex` with
  a million scores, and :func:`quiz.selectors.player_rank` (the indexed query
  fallback) on the database the command is configured with.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from time import perf_counter, perf_counter_ns

from .http import ConnectionFailed, HttpStats, Pool, Response
from .report import Report, ms, percentile, rate


@dataclass
class LoopResult:
    name: str
    seconds: float
    statuses: Counter[int] = field(default_factory=Counter)
    failures: int = 0
    latencies: dict[int, list[float]] = field(default_factory=dict)
    admitted: list[tuple[int, str]] = field(default_factory=list)  # (player_id, nickname) of 201s
    retry_after_missing: int = 0
    offered_seconds: float = 0.0

    def count(self, status: int) -> int:
        return self.statuses[status]

    def per_second(self, status: int) -> float:
        return rate(self.statuses[status], self.seconds)


async def _closed_loop(
    name: str, pool: Pool, workers: int, duration: float, send: Callable[[int], Awaitable[Response]]
) -> LoopResult:
    result = LoopResult(name, duration)
    sequence = iter(range(10**9))
    stop = perf_counter() + duration

    async def worker() -> None:
        while perf_counter() < stop:
            n = next(sequence)
            start = perf_counter()
            try:
                response = await send(n)
            except ConnectionFailed:
                result.failures += 1
                continue
            result.statuses[response.status] += 1
            result.latencies.setdefault(response.status, []).append(perf_counter() - start)
            if response.status == 201:
                body = response.json()
                result.admitted.append((int(body["player_id"]), body["nickname"]))

    started = perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    result.seconds = perf_counter() - started
    return result


async def join_bench(
    *, url: str, code: str, run_id: str, duration: float, connections: int
) -> tuple[LoopResult, LoopResult, LoopResult, HttpStats]:
    """``/healthz``, joins, ``/healthz`` again, each for ``duration`` seconds on ``connections``."""
    stats = HttpStats()
    pool = Pool(url, connections, stats=stats)
    try:

        async def healthz(n: int) -> Response:
            return await pool.request("healthz", "GET", "/healthz")

        async def join(n: int) -> Response:
            return await pool.request(
                "bench-join",
                "POST",
                f"/api/quiz/games/{code}/join",
                json_body={"nickname": f"jb{run_id}-{n}"},
            )

        await _closed_loop("warm-up", pool, connections, min(1.0, duration), healthz)
        before = await _closed_loop("GET /healthz", pool, connections, duration, healthz)
        joins = await _closed_loop("POST join", pool, connections, duration, join)
        after = await _closed_loop("GET /healthz", pool, connections, duration, healthz)
    finally:
        await pool.close()
    return before, joins, after, stats


async def overload(
    *, url: str, code: str, run_id: str, offered_rate: float, duration: float, connections: int
) -> tuple[LoopResult, float]:
    """Offer ``offered_rate`` joins/s for ``duration`` s (open loop, no retries).

    Returns the result and the rate actually offered (the generator may fall behind).
    """
    stats = HttpStats()
    pool = Pool(url, connections, stats=stats)
    result = LoopResult("overload", duration)
    total = max(1, int(offered_rate * duration))
    tasks: list[asyncio.Task[None]] = []

    async def one(n: int) -> None:
        start = perf_counter()
        try:
            response = await pool.request(
                "overload-join",
                "POST",
                f"/api/quiz/games/{code}/join",
                json_body={"nickname": f"ov{run_id}-{n}"},
            )
        except ConnectionFailed:
            result.failures += 1
            return
        result.statuses[response.status] += 1
        result.latencies.setdefault(response.status, []).append(perf_counter() - start)
        if response.status == 201:
            body = response.json()
            result.admitted.append((int(body["player_id"]), body["nickname"]))
        elif response.status == 429 and (response.retry_after() or 0) < 1:
            result.retry_after_missing += 1

    try:
        started = perf_counter() + 0.05
        for n in range(total):
            delay = started + n / offered_rate - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(n)))
        offered_seconds = result.offered_seconds = perf_counter() - started
        await asyncio.gather(*tasks)
        result.seconds = perf_counter() - started
    finally:
        await pool.close()
    return result, rate(total, offered_seconds)


def report_join_bench(
    report: Report,
    before: LoopResult,
    joins: LoopResult,
    after: LoopResult,
    stats: HttpStats,
    *,
    stored: set[int],
    ratio_goal: float | None,
) -> None:
    trivial = (before.per_second(200) + after.per_second(200)) / 2
    admitted = joins.per_second(201)
    report.figure(
        "join bench: GET /healthz (trivial async view)",
        f"{before.per_second(200):.0f} then {after.per_second(200):.0f} req/s (mean {trivial:.0f}), "
        f"p50 {ms(percentile(before.latencies.get(200, []), 50))}",
    )
    report.figure(
        "join bench: POST join, admitted",
        f"{admitted:.0f} joins/s = {admitted / trivial * 100 if trivial else 0:.0f}% of /healthz; "
        f"p50 {ms(percentile(joins.latencies.get(201, []), 50))}, "
        f"p99 {ms(percentile(joins.latencies.get(201, []), 99))}; "
        + ", ".join(f"{status}: {n}" for status, n in sorted(joins.statuses.items())),
    )
    fivexx = sum(n for status, n in stats.statuses.items() if status[1] >= 500)
    report.check(
        "join bench: no 5xx, every request answered",
        fivexx == 0 and not stats.failures,
        f"{fivexx} 5xx, {sum(stats.failures.values())} without a response",
    )
    lost = [pid for pid, _ in joins.admitted if pid not in stored]
    report.check("join bench: every 201 is stored", not lost, f"{len(lost)} of {len(joins.admitted)} missing")
    if ratio_goal is not None:
        report.check(
            f"admitted joins/s ≥ {ratio_goal:.0%} of /healthz in the same run",
            trivial > 0 and admitted >= ratio_goal * trivial,
            f"{admitted:.0f} vs {trivial:.0f} req/s ({admitted / trivial * 100 if trivial else 0:.0f}%)",
            goal=True,
        )


def report_overload(
    report: Report,
    result: LoopResult,
    *,
    offered: float,
    configured: float,
    factor: float,
    stored: set[int],
) -> None:
    admitted = result.per_second(201)
    report.figure(
        f"overload: {factor:g}× the join rate ({configured:g}/s)",
        f"offered {offered:.0f} joins/s for {result.offered_seconds:.1f} s, all answered after "
        f"{result.seconds:.1f} s: "
        + ", ".join(f"{status}: {n}" for status, n in sorted(result.statuses.items()))
        + f"; admitted {admitted:.0f}/s",
    )
    report.figure(
        "overload latency",
        "; ".join(
            f"{status} p50 {ms(percentile(result.latencies.get(status, []), 50))} "
            f"p99 {ms(percentile(result.latencies.get(status, []), 99))}"
            for status in (201, 429)
        ),
    )
    others = {status: n for status, n in result.statuses.items() if status not in (201, 429)}
    report.check(
        f"at {factor:g}× the admission rate only 201 and 429",
        not others and result.failures == 0 and result.count(201) > 0,
        f"other statuses {others}, {result.failures} without a response",
    )
    # If the server cannot serve the configured rate, requests queue before the
    # limiter and it never sees the excess: no 429, only slow 201s.
    report.check(
        "overload: the limiter refused the excess (some 429s)",
        result.count(429) > 0,
        f"{result.count(429)} refused; admitted {admitted:.0f}/s for {configured:g}/s configured",
        goal=True,
    )
    report.check(
        "overload: every 429 has a Retry-After ≥ 1",
        result.retry_after_missing == 0,
        f"{result.retry_after_missing} without",
    )
    lost = [pid for pid, _ in result.admitted if pid not in stored]
    report.check("overload: every 201 is stored", not lost, f"{len(lost)} of {len(result.admitted)} missing")
    # Fixed one-second windows: a run of D seconds touches at most ceil(D) + 1 of them.
    ceiling = configured * (math.ceil(result.seconds) + 1)
    report.check(
        "overload: admissions stay within the configured rate",
        result.count(201) <= ceiling,
        f"{result.count(201)} admitted, at most {ceiling:.0f} allowed",
    )


# -- ranking -------------------------------------------------------------------


def rank_bench(
    report: Report, *, players: int, lookups: int, seed: int | None, goal_ms: float | None
) -> None:
    """ScoreIndex with ``players`` scores (0..10,000, as ten 1,000-point questions give)."""
    from ..ranking import ScoreIndex

    rng = random.Random(seed)
    scores = [rng.randint(0, 10_000) for _ in range(players)]
    start = perf_counter()
    index = ScoreIndex()
    for score in scores:
        index.add(score)
    built = perf_counter() - start
    probes = [rng.choice(scores) for _ in range(lookups)]
    timings: list[float] = []
    for score in probes:
        t0 = perf_counter_ns()
        index.rank(score)
        timings.append((perf_counter_ns() - t0) / 1e9)
    moves = [(rng.choice(scores), rng.randint(0, 10_000)) for _ in range(min(lookups, 100_000))]
    t0 = perf_counter()
    for old, new in moves:
        index.move(old, new)
        index.move(new, old)
    move_cost = (perf_counter() - t0) / (2 * len(moves))
    # Cross-check a few ranks against a plain count.
    for score in probes[:5]:
        assert index.rank(score) == sum(1 for s in scores if s > score) + 1
    p99 = percentile(timings, 99)
    report.figure(
        f"ScoreIndex, {players:,} players",
        f"built in {built:.2f} s; rank lookup p50 {percentile(timings, 50) * 1e6:.1f} µs, "
        f"p99 {p99 * 1e6:.1f} µs, max {max(timings) * 1e6:.1f} µs ({lookups:,} lookups); "
        f"score move {move_cost * 1e6:.1f} µs",
    )
    if goal_ms is not None:
        report.check(
            f"rank lookup among {players:,} players ≤ {goal_ms:g} ms (ScoreIndex)",
            p99 is not None and p99 * 1000 <= goal_ms,
            f"p99 {p99 * 1e6:.1f} µs",
            goal=True,
        )


def rank_db_bench(
    report: Report, *, players: int, seed: int | None, goal_ms: float | None, keep: bool
) -> None:
    """``selectors.player_rank`` (COUNT over the (game, -score) index) with ``players`` rows.

    Writes a scratch game into the configured database; point ``DATABASE_URL``
    at a scratch file. The rows are deleted afterwards unless ``keep``.
    """
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction
    from django.utils import timezone

    from .. import selectors
    from ..models import Game, Player, Question, QuestionSet

    rng = random.Random(seed)
    host, _ = get_user_model().objects.get_or_create(username="quiz-rank-bench")
    question_set = QuestionSet.objects.create(title="rank bench")
    Question.objects.create(question_set=question_set, text="?", choices=["a", "b"], correct_choice=0)
    game = Game.objects.create(
        code=f"RB{rng.randrange(10**8):08d}"[:12], title="rank bench", question_set=question_set, host=host
    )
    table = Player._meta.db_table
    now = timezone.now()
    start = perf_counter()
    batch = 50_000
    with transaction.atomic(), connection.cursor() as cursor:
        for offset in range(0, players, batch):
            rows = [
                (game.pk, f"p{n}", f"rb{game.pk}-{n:056d}", rng.randint(0, 10_000), now)
                for n in range(offset, min(players, offset + batch))
            ]
            cursor.executemany(
                f"INSERT INTO {table} (game_id, nickname, token_hash, score, joined_at) "
                "VALUES (%s, %s, %s, %s, %s)",
                rows,
            )
    inserted = perf_counter() - start
    try:
        scores = sorted(Player.objects.filter(game=game).values_list("score", flat=True), reverse=True)
        figures = []
        worst = 0.0
        for label, share in (("top", 0.0), ("1%", 0.01), ("10%", 0.1), ("median", 0.5), ("bottom", 0.999999)):
            score = scores[min(len(scores) - 1, int(share * len(scores)))]
            timings = []
            for _ in range(5):
                t0 = perf_counter()
                selectors.player_rank(game_id=game.pk, score=score)
                timings.append(perf_counter() - t0)
            best = sorted(timings)[len(timings) // 2]
            worst = max(worst, best)
            figures.append(f"{label} {ms(best)}")
        t0 = perf_counter()
        selectors.player_count(game_id=game.pk)
        count_cost = perf_counter() - t0
        t0 = perf_counter()
        selectors.leaderboard_top(game_id=game.pk, limit=10)
        top_cost = perf_counter() - t0
        report.figure(
            f"selectors.player_rank on {connection.vendor}, {players:,} players",
            f"{', '.join(figures)} (median of 5; inserted in {inserted:.0f} s); "
            f"player_count {ms(count_cost)}, leaderboard_top(10) {ms(top_cost)}",
        )
        if goal_ms is not None:
            report.check(
                f"rank lookup among {players:,} players ≤ {goal_ms:g} ms (database fallback, worst rank)",
                worst * 1000 <= goal_ms,
                f"worst {ms(worst)}",
                goal=True,
            )
    finally:
        if not keep:
            t0 = time.monotonic()
            with transaction.atomic():
                Player.objects.filter(game=game)._raw_delete(connection.alias)  # type: ignore[attr-defined]
                game.delete()
                question_set.delete()
            report.figure("rank bench clean-up", f"{time.monotonic() - t0:.0f} s")
