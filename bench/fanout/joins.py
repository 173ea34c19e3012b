"""The joins load generator: ``python -m bench.fanout.joins`` (the quiz's ``quiz_storm`` phases).

Same protocol as :mod:`bench.fanout.loadgen`: one JSON job on stdin, ``{"result": ...}``
or ``{"error": ...}`` on stdout. Unlike it, this one sets Django up (with the
servers' environment, so it shares their database): it logs a host in, creates
a game, drives the joins with :mod:`quiz.loadtest.storm` over HTTP, and then
compares the 201s with the players stored.

Jobs (``job["mode"]``):

``capacity``
    for each of ``levels`` (closed loops, each below the front door's
    ``MAX_IN_FLIGHT``, as ``quiz_storm``'s capacity phase), that many closed
    loops of joins for ``seconds`` against ``urls`` (one URL: one process, or the
    proxy in front of several): admitted joins/s, and joins per CPU-second of
    ``server_pids`` (``proxy_pids`` measured apart), each level measured on its
    own. The result is the level of ``reference_levels`` (default: all) with the
    most joins per server CPU-second (the figure the goal compares), every level
    kept in ``levels``; with ``per_process_levels`` (several processes behind
    one URL: the reference levels times their number, so each process sees the
    loops one process saw), the best of those in ``per_process_best``.
``global``
    ``factor`` × the configured ``QUIZ["JOIN_RATE"]`` for ``seconds``, open loop,
    split over ``urls`` (processes sharing their limit in Redis): the admitted rate.
"""

from __future__ import annotations

import asyncio
import json
import random
import secrets
import sys
import time
from collections.abc import Awaitable
from typing import Any

from .servers import cpu_seconds_of


async def _drive(job: dict[str, Any]) -> dict[str, Any]:
    from quiz.loadtest import storm
    from quiz.loadtest.game import question_set
    from quiz.loadtest.host import HostClient

    urls = [str(url) for url in job["urls"]]
    username, password = job["host"]
    run_id = secrets.token_hex(3)
    target = storm.Target(urls, int(job.get("addresses", 200)), keepalive=True)
    host = HostClient(urls[0])
    server_pids = [int(pid) for pid in job.get("server_pids", ())]
    proxy_pids = [int(pid) for pid in job.get("proxy_pids", ())]
    try:
        await host.login(username, password)
        set_id = await host.import_questions(question_set(1, time_limit=30.0, rng=random.Random(0)))
        code = await host.create_game(set_id, f"bench {job['mode']} {run_id}")
        if job["mode"] == "capacity":
            levels: list[dict[str, Any]] = []
            for loops in job["levels"]:
                phase = storm.capacity(target, code, f"{run_id}-{loops}", float(job["seconds"]), int(loops))
                levels.append({"loops": int(loops), **await _measured(server_pids, proxy_pids, phase)})
                await asyncio.sleep(0.5)  # the level's last answers are out before the next begins
        else:
            levels = [
                await _measured(
                    server_pids,
                    proxy_pids,
                    storm.storm(
                        target,
                        code,
                        run_id,
                        factor=float(job["factor"]),
                        capacity_rate=float(job["configured"]),
                        seconds=float(job["seconds"]),
                        client_timeout=float(job.get("client_timeout", 5.0)),
                    ),
                )
            ]
    finally:
        await host.close()
        await target.close()
    admitted: dict[str, int] = {}
    for level in levels:
        admitted.update(level.pop("admitted"))
    if job["mode"] != "capacity":
        return {"code": code, "admitted": admitted, **levels[0]}
    reference = [level for level in levels if level["loops"] in job.get("reference_levels", job["levels"])]
    top: dict[str, Any] = max(reference, key=per_cpu)
    best = {**top, "levels": levels}
    per_process = [level for level in levels if level["loops"] in job.get("per_process_levels", ())]
    if per_process:
        best["per_process_best"] = max(per_process, key=per_cpu)
    return {"code": code, "admitted": admitted, **best}


async def _measured(server_pids: list[int], proxy_pids: list[int], phase: Awaitable[Any]) -> dict[str, Any]:
    """Run one phase of ``storm`` and count the server and proxy CPU it took."""
    server_before, proxy_before = cpu_seconds_of(server_pids), cpu_seconds_of(proxy_pids)
    started = time.perf_counter()
    offered = await phase
    window = time.perf_counter() - started
    server_cpu = cpu_seconds_of(server_pids) - server_before
    proxy_cpu = cpu_seconds_of(proxy_pids) - proxy_before
    admitted = offered.statuses[201]
    return {
        "admitted": dict(offered.admitted),
        "statuses": {str(k): v for k, v in sorted(offered.statuses.items())},
        "timeouts": offered.timeouts,
        "errors": dict(offered.errors),
        "seconds": offered.seconds,
        "window_s": window,
        "offered_rate": offered.offered_rate,
        "joins": admitted,
        "joins_per_s": admitted / offered.seconds if offered.seconds > 0 else None,
        "p99_201_ms": (offered.p99(201) or 0) * 1000,
        "server_cpu_s": server_cpu,
        "server_cpu": server_cpu / window if window > 0 else None,
        "joins_per_server_cpu_s": admitted / server_cpu if server_cpu > 0 else None,
        "proxy_cpu_s": proxy_cpu if proxy_pids else None,
        "joins_per_proxy_cpu_s": admitted / proxy_cpu if proxy_pids and proxy_cpu > 0 else None,
    }


def per_cpu(result: dict[str, Any]) -> float:
    """Joins per server CPU-second of a level or a run (0 when not measured): what "best" means."""
    return float(result.get("joins_per_server_cpu_s") or 0)


def run(job: dict[str, Any]) -> dict[str, Any]:
    import django

    django.setup()
    from quiz.loadtest import storm
    from quiz.management.commands.quiz_loadtest import _run, host_login
    from quiz.models import Player

    if job["mode"] == "capacity":
        error = storm.capacity_levels_error([int(n) / int(job.get("processes", 1)) for n in job["levels"]])
        if error is not None:
            raise ValueError(f"levels: each {error} per process, got {job['levels']}")
    job["host"] = host_login({"host_user": None, "host_password": None})
    configured = None
    if job["mode"] == "global":
        from quiz.conf import quiz_settings
        from realtime.core.rates import parse_limit

        # The configured rate as the servers read it: this process has their environment.
        configured = parse_limit(quiz_settings.join_rate).rate.per_second
        job["configured"] = configured
    result: dict[str, Any] = _run(_drive(job))
    # The database holds exactly the joins that got a 201: none lost, none without its answer.
    stored = dict(Player.objects.filter(game__code=result["code"]).values_list("nickname", "pk"))
    admitted = result.pop("admitted")
    result["stored"] = len(stored)
    result["stored_match"] = stored == admitted
    if configured is not None:
        result["configured_rate"] = configured
        result["admitted_rate"] = result["joins"] / result["seconds"] if result["seconds"] else None
        if result["admitted_rate"] is not None:
            result["admitted_vs_configured"] = result["admitted_rate"] / configured - 1
    return result


def main() -> None:
    job = json.loads(sys.stdin.readline())
    started = time.monotonic()
    try:
        result = run(job)
    except Exception as exc:
        sys.stdout.write(json.dumps({"error": f"{type(exc).__name__}: {exc}"}) + "\n")
        return
    sys.stdout.write(json.dumps({"result": result, "wall_s": time.monotonic() - started}) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
