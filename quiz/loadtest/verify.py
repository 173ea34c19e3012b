"""Compare what the simulated players saw with the database, and compute the figures.

Runs synchronously after the event loop has stopped, through the Django ORM
with the command's own settings: the load test must run with the server's
settings and database (the same ``DATABASE_URL``), which :func:`verify_game`
checks first (the game's code must exist in the database it reads).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from django.db.models import Sum

from ..conf import quiz_settings
from ..models import Answer, Game, Player
from .game import BoardSeen, GameRun
from .reconnect import Failure, tally
from .report import Report, ms, percentile, rate


def _competition_ranks(rows: list[tuple[int, str, int]], game: Game) -> list[dict[str, Any]]:
    """Top rows with ranks computed independently of the server (count of higher scores + 1)."""
    return [
        {
            "rank": Player.objects.filter(game=game, score__gt=score).count() + 1,
            "player_id": pid,
            "nickname": nickname,
            "score": score,
        }
        for pid, nickname, score in rows
    ]


def verify_game(run: GameRun, report: Report, *, fresh_game: bool, p99_goal: float | None) -> None:
    game = Game.objects.filter(code=run.code).first()
    if not report.check(
        "the command reads the server's database",
        game is not None,
        "" if game else f"game {run.code} is not in this database: run with the server's settings",
    ):
        return
    assert game is not None
    players = run.players
    admitted = run.admitted
    stats = run.stats

    # -- joins ---------------------------------------------------------------
    join_seconds = max(run.join_ended - run.join_started, 1e-9)
    report.figure("players admitted", f"{len(admitted)}/{len(players)}")
    report.figure(
        "join phase",
        f"{join_seconds:.2f} s, {rate(len(admitted), join_seconds):.0f} admitted joins/s "
        f"({run.config.http_connections} keep-alive connections)",
    )
    report.figure(
        "join responses",
        ", ".join(f"{status}: {n}" for (kind, status), n in sorted(stats.statuses.items()) if kind == "join"),
    )
    report.figure("join 429s / 503s", f"{stats.of('join', 429)} / {stats.of('join', 503)}")
    report.figure("join attempts per player (max)", str(max((p.join_attempts for p in players), default=0)))
    failures = sum(stats.failures.values())
    fivexx = stats.total(status_class=5)
    report.figure("5xx responses (all requests)", str(fivexx))
    report.check("no 5xx response", fivexx == 0, f"{fivexx} responses with 5xx")
    report.check(
        "every request got a response",
        failures == 0,
        ", ".join(f"{k} ×{n}" for k, n in stats.failures.items()) or "",
    )
    report.check(
        "every player was admitted",
        len(admitted) == len(players),
        "; ".join(sorted({p.join_error or "" for p in players if p.join_status != 201}))[:300],
    )
    db_players = {
        pid: (nickname, score) for pid, nickname, score in game.players.values_list("id", "nickname", "score")
    }
    missing = [p for p in admitted if db_players.get(p.player_id, (None,))[0] != p.nickname]
    report.check(
        "every admitted (201) player is stored (ORM)", not missing, f"{len(missing)} not in the database"
    )
    ours = {p.nickname for p in players}
    phantoms = (
        [pid for pid, (nickname, _) in db_players.items() if nickname not in {p.nickname for p in admitted}]
        if fresh_game
        else [
            pid
            for pid, (nickname, _) in db_players.items()
            if nickname in ours and pid not in {p.player_id for p in admitted}
        ]
    )
    report.check("no player stored without a 201", not phantoms, f"{len(phantoms)} extra rows")

    # -- sockets -------------------------------------------------------------
    connected = run.connected
    connect_seconds = max(run.connect_ended - run.connect_started, 1e-9)
    report.figure(
        "websocket connect + 3 subscribes",
        f"{len(connected)}/{len(admitted)} in {connect_seconds:.2f} s "
        f"({rate(len(connected), connect_seconds):.0f}/s)",
    )
    report.check(
        "every admitted player connected and subscribed",
        len(connected) == len(admitted),
        "; ".join(sorted({p.connect_error or "" for p in admitted if not p.connected}))[:300],
    )
    first: Counter[Failure] = Counter()
    again: Counter[Failure] = Counter()
    for player in admitted:
        first.update(player.connect_retries)
        again.update(player.reconnect_retries)
    # Connects and reconnects the server refused (or that broke) and the players retried, as
    # the shipped clients do: a refusal is the server's, a failed check is a player kept out.
    report.figure("websocket connects refused and retried", tally(first, refusals=True))
    report.figure("websocket reconnects refused and retried", tally(again, refusals=True))
    report.figure("websocket connects retried after another failure", tally(first, refusals=False))
    report.figure("websocket reconnects retried after another failure", tally(again, refusals=False))
    report.figure(
        "websocket connect attempts per player (max)",
        str(max((p.connect_attempts for p in admitted), default=0)),
    )
    report.figure(
        "websockets reconnected after a going-away close (1001)",
        f"{sum(p.reconnects for p in connected)} "
        f"(WebSocket answers sent again after one: {sum(p.answers_resent for p in connected)})",
    )
    early = [p for p in connected if p.closed_early]
    report.check(
        "no socket closed by the server",
        not early,
        "; ".join(sorted({p.closed_early or "" for p in early}))[:300],
    )
    unexpected = [frame for p in players for frame in p.unexpected]
    report.check("no unexpected frame", not unexpected, "; ".join(unexpected[:3]))

    # -- answers -------------------------------------------------------------
    accepted = {
        (p.player_id, qid): record for p in players for qid, record in p.answers.items() if record.accepted
    }
    rejected = [record for p in players for record in p.answers.values() if not record.accepted]
    by_via = Counter(record.via for record in accepted.values())
    report.figure(
        "answers accepted",
        f"{len(accepted)} (WebSocket {by_via['ws']}, HTTP {by_via['http']}), rejected {len(rejected)}",
    )
    report.check(
        "every answer accepted",
        not rejected,
        "; ".join(sorted({record.error or "" for record in rejected}))[:300],
    )
    rows = {
        (row["player_id"], row["question_id"]): row
        for row in Answer.objects.filter(game=game).values(
            "player_id", "question_id", "choice", "points", "correct", "scored_at"
        )
    }
    ours_ids = {p.player_id for p in admitted}
    rows_ours = {key: row for key, row in rows.items() if key[0] in ours_ids}
    wrong_choice = [
        key for key, record in accepted.items() if key in rows and rows[key]["choice"] != record.choice
    ]
    report.check(
        "Answer rows == answers accepted",
        set(rows_ours) == set(accepted) and not wrong_choice,
        f"{len(rows_ours)} rows for {len(accepted)} accepted; "
        f"{len(set(accepted) - set(rows_ours))} missing, {len(set(rows_ours) - set(accepted))} extra, "
        f"{len(wrong_choice)} with another choice",
    )
    unscored = Answer.objects.filter(game=game, scored_at=None).count()
    report.check("no answer left unscored", unscored == 0, f"{unscored} unscored")
    sums = dict(
        Answer.objects.filter(game=game)
        .values("player_id")
        .annotate(total=Sum("points"))
        .values_list("player_id", "total")
    )
    off = [pid for pid, (_, score) in db_players.items() if score != (sums.get(pid) or 0)]
    report.check("Player.score == sum of its Answer.points", not off, f"{len(off)} players differ")

    # -- scores heard --------------------------------------------------------
    counts = Counter()
    heard: set[tuple[int | None, int]] = set()
    mismatched = []
    latencies: dict[str, list[float]] = {"ws": [], "http": []}
    for p in admitted:
        for qid, records in p.scores.items():
            key = (p.player_id, qid)
            if key not in accepted:
                counts["for no accepted answer"] += len(records)
                continue
            counts["heard"] += 1
            heard.add(key)
            if len(records) > 1:
                counts["duplicates"] += len(records) - 1
            row = rows.get(key)
            event = records[0].event
            if row is None or event.get("delta") != row["points"] or event.get("correct") != row["correct"]:
                mismatched.append(key)
            answer = accepted[key]
            latencies[answer.via].append(records[0].received_at - answer.sent_at)
    heard_missing = len(accepted) - counts["heard"]
    # Whose: a reconnect or a retried connect in their history points at the retry path.
    deaf = [
        p
        for p in admitted
        if any((p.player_id, qid) not in heard for qid in p.answers if (p.player_id, qid) in accepted)
    ]
    report.check(
        "every accepted answer's score reached its player",
        heard_missing == 0,
        f"{heard_missing} of {len(accepted)} never heard"
        + (
            f" ({len(deaf)} players: {sum(1 for p in deaf if p.reconnects)} reconnected after a 1001, "
            f"{sum(1 for p in deaf if p.reconnect_retries)} of them after a retry, "
            f"{sum(1 for p in deaf if p.connect_retries)} retried their first connect)"
            if deaf
            else ""
        ),
    )
    report.check(
        "every answer scored exactly once (one score event each)",
        counts["duplicates"] == 0 and counts["for no accepted answer"] == 0,
        f"{counts['duplicates']} duplicate events, {counts['for no accepted answer']} for no accepted answer",
    )
    report.check(
        "each score event matches its Answer row (delta, correct)",
        not mismatched,
        f"{len(mismatched)} differ",
    )
    last_off = []
    for p in admitted:
        if not p.scores:
            continue
        last_qid = max(p.scores, key=lambda qid: p.scores[qid][0].received_at)
        if p.scores[last_qid][-1].event.get("score") != db_players.get(p.player_id, (None, None))[1]:
            last_off.append(p.player_id)
    report.check("each player's last score event == Player.score", not last_off, f"{len(last_off)} differ")

    all_latencies = latencies["ws"] + latencies["http"]
    p99 = percentile(all_latencies, 99)
    report.figure(
        "answer→score latency",
        f"p50 {ms(percentile(all_latencies, 50))}, p90 {ms(percentile(all_latencies, 90))}, "
        f"p99 {ms(p99)}, max {ms(max(all_latencies, default=None))} (n={len(all_latencies)})",
    )
    acks = [r.acked_at - r.sent_at for r in accepted.values() if r.acked_at is not None]
    after_ack = [
        records[0].received_at - accepted[(p.player_id, qid)].acked_at  # type: ignore[operator]
        for p in admitted
        for qid, records in p.scores.items()
        if (p.player_id, qid) in accepted and accepted[(p.player_id, qid)].acked_at is not None
    ]
    report.figure(
        "  of which: send → accepted (202 / publish_success)",
        f"p50 {ms(percentile(acks, 50))}, p99 {ms(percentile(acks, 99))}",
    )
    report.figure(
        "  of which: accepted → score heard",
        f"p50 {ms(percentile(after_ack, 50))}, p99 {ms(percentile(after_ack, 99))}",
    )
    for via, name in (("ws", "  via WebSocket publish"), ("http", "  via HTTP POST")):
        values = latencies[via]
        report.figure(
            name, f"p50 {ms(percentile(values, 50))}, p99 {ms(percentile(values, 99))} (n={len(values)})"
        )
    if p99_goal is not None:
        report.check(
            f"answer→score p99 ≤ {p99_goal:g} s",
            p99 is not None and p99 <= p99_goal,
            f"p99 {ms(p99)}",
            goal=True,
        )

    # -- questions and reveals -------------------------------------------------
    reveal_off = []
    for question in run.questions:
        seen = [
            p.questions_seen[question.question_id] - question.host_sent_at
            for p in connected
            if question.question_id in p.questions_seen
        ]
        report.figure(
            f"question {question.index + 1} delivery (host POST → player)",
            f"p50 {ms(percentile(seen, 50))}, max {ms(max(seen, default=None))}, "
            f"{len(seen)}/{len(connected)} players",
        )
        if len(seen) != len(connected):
            reveal_off.append(f"question {question.index + 1} reached {len(seen)}/{len(connected)}")
        expected_counts = Counter(
            r.choice for (pid, qid), r in accepted.items() if qid == question.question_id
        )
        reveal = question.reveal
        if reveal is None:
            reveal_off.append(f"question {question.index + 1}: no reveal heard")
        elif (
            fresh_game
            and [expected_counts.get(i, 0) for i in range(len(reveal["counts"]))] != reveal["counts"]
        ):
            reveal_off.append(f"question {question.index + 1}: reveal counts {reveal['counts']}")
    report.check(
        "every question and its reveal (counts == answers accepted) reached everyone",
        not reveal_off,
        "; ".join(reveal_off)[:300],
    )

    # -- leaderboards --------------------------------------------------------
    top_rows = list(game.players.order_by("-score", "pk").values_list("id", "nickname", "score")[:50])
    finals = {p.final_board for p in connected}
    report.check(
        "every player heard the same final leaderboard",
        None not in finals and len(finals) == 1,
        f"{sum(1 for p in connected if p.final_board)}/{len(connected)} heard one; "
        f"{len(finals - {None})} distinct",
    )
    final_board = run.boards.get(next(iter(finals - {None}), ""), None) if finals - {None} else None
    if final_board is not None:
        top = final_board.event["top"]
        expected_top = _competition_ranks(top_rows[: len(top)], game)
        report.check(
            "final leaderboard == database (top N with ranks, player count)",
            top == expected_top
            and final_board.event["players"] == len(db_players)
            and len(top) == min(len(db_players), quiz_settings.leaderboard_size),
            f"players {final_board.event['players']} vs {len(db_players)}",
        )
    api = run.api_leaderboard
    if api is not None:
        expected_top = _competition_ranks(top_rows[: len(api.get("top", []))], game)
        report.check(
            "GET leaderboard == database",
            api.get("players") == len(db_players) and api.get("top") == expected_top,
            f"players {api.get('players')} vs {len(db_players)}",
        )
    else:
        report.check("GET leaderboard == database", False, "no leaderboard response")
    _leaderboard_lag(run, report, fresh_game=fresh_game)

    for error in run.errors:
        report.check("simulation ran to the end", False, error)
    for phase, usage in run.cpu.items():
        report.figure(f"CPU, {phase}", usage)


def _leaderboard_lag(run: GameRun, report: Report, *, fresh_game: bool) -> None:
    """Per question: from the last score event heard by a player who ends in the top N
    (the scores a board can show) to the first and the last delivery of the first board
    whose top N is the standings after the question (ties by join order).

    Negative: the board reached players before that player's own score frame did.
    """
    if not fresh_game:
        report.figure("leaderboard lag", "not measured: the game had players of its own")
        return
    admitted = run.admitted
    running = {p.player_id: 0 for p in admitted}
    by_id = {p.player_id: p for p in admitted}
    boards = sorted(run.boards.values(), key=lambda board: board.first_at)
    firsts: list[float] = []
    lasts: list[float] = []
    unreflected = []
    for question in run.questions:
        qid = question.question_id
        heard = [p.scores[qid][0] for p in admitted if qid in p.scores]
        if not heard:
            continue
        for p in admitted:
            if qid in p.scores:
                running[p.player_id] = p.scores[qid][0].event["score"]
        first_score = min(record.received_at for record in heard)
        ordered = sorted(running.items(), key=lambda item: (-item[1], item[0]))
        match: BoardSeen | None = None
        # The first board sent after this question's scoring began whose top N is
        # the standings after it (it may already carry the next question's id).
        for board in boards:
            top = board.event.get("top") or []
            if board.first_at < first_score or not top:
                continue
            if [(row["player_id"], row["score"]) for row in top] == ordered[: len(top)]:
                match = board
                break
        if match is None:
            unreflected.append(question.index + 1)
            continue
        shown = [
            by_id[pid].scores[qid][0].received_at
            for pid, _ in ordered[: len(match.event["top"])]
            if qid in by_id[pid].scores
        ]
        if not shown:
            continue
        last_shown = max(shown)
        firsts.append(match.first_at - last_shown)
        lasts.append(match.last_at - last_shown)
        report.figure(
            f"question {question.index + 1} leaderboard lag",
            f"first delivery {ms(firsts[-1])}, last of {match.receivers} deliveries {ms(lasts[-1])}",
        )
    if firsts:
        report.figure(
            "leaderboard lag (top-N score → board showing it)",
            f"first delivery max {ms(max(firsts))}, all delivered max {ms(max(lasts))}",
        )
    report.check(
        "a leaderboard broadcast reflected every question's scores",
        not unreflected,
        f"questions {unreflected} never reflected" if unreflected else "",
    )
