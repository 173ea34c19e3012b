"""The figures as a table, the ratios, and the goals (docs/BENCHMARKS.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .scale_report import render_scale, scale_goals
from .servers import KINDS

REFERENCE = "ref-daphne"
CEILING = "ceiling"

# The goals, measured (never asserted in tests).
BURST_VS_REFERENCE = 10.0
STEADY_P99_MS = 100.0
IDLE_KIB_PER_CONNECTION = 30.0
# The steady fan-out issue's goals, each a ratio against the ceiling measured in the same run.
STEADY_CPU_VS_CEILING = 0.5  # steady deliveries per server CPU-second, at least
STEADY_P99_VS_CEILING = 2.0  # steady p99, at most
BURST_VS_CEILING = 0.7  # burst deliveries/s, at least
CONNECTS_VS_CEILING = 0.7  # connects/s while opening the memory scenario's connections, at least
MEMORY_VS_CEILING = 1.3  # idle RSS per connection, at most
REDIS_STEADY_VS_ONE = 0.9  # 2 processes + Redis, steady deliveries per server CPU-second vs 1 process


def _get(results: dict[str, Any], kind: str, scenario: str, key: str) -> Any:
    value = results.get(kind, {}).get(scenario, {})
    return value.get(key) if isinstance(value, dict) else None


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return str(value)


def _ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return a / b
    return None


Row = tuple[str, Callable[[str], str]]


def _rows(results: dict[str, Any], meta: dict[str, Any]) -> list[Row]:
    s = meta["sizes"]

    def err(kind: str, scenario: str) -> str | None:
        if _get(results, kind, scenario, "error"):
            return "ERROR"
        return None

    def field(scenario: str, key: str, digits: int = 0, scale: float = 1.0) -> Callable[[str], str]:
        def cell(kind: str) -> str:
            value = _get(results, kind, scenario, key)
            if value is None:
                return err(kind, scenario) or "-"
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = value * scale
            return _num(value, digits)

        return cell

    def lost_dup(scenario: str) -> Callable[[str], str]:
        def cell(kind: str) -> str:
            lost = _get(results, kind, scenario, "lost")
            dup = _get(results, kind, scenario, "duplicates")
            if lost is None:
                return err(kind, scenario) or "-"
            return f"{lost:,} / {dup:,}"

        return cell

    burst = f"{s['burst_subscribers']:,} subs x {s['burst_events']} events"
    steady = f"{s['steady_subscribers']:,} subs x {s['steady_rate']:g}/s x {s['steady_duration']:g}s"
    redis = f"{s['redis_subscribers']:,} subs x {s['redis_events']} events"
    return [
        (f"burst deliveries/s ({burst})", field("burst", "deliveries_per_s")),
        ("  burst: server CPU busy (share of its core)", field("burst", "server_cpu", 0, 100)),
        ("  burst: deliveries per server CPU-second", field("burst", "deliveries_per_server_cpu_s")),
        ("  burst: lost / duplicated", lost_dup("burst")),
        ("  burst: other programs on the server core (%)", field("burst", "others_on_server_cores", 0, 100)),
        (f"steady p50 ms ({steady})", field("steady", "p50_ms", 1)),
        ("steady p99 ms", field("steady", "p99_ms", 1)),
        ("steady max ms", field("steady", "max_ms", 1)),
        ("  steady: lost / duplicated", lost_dup("steady")),
        ("  steady: server CPU busy (share of its core)", field("steady", "server_cpu", 0, 100)),
        ("  steady: deliveries per server CPU-second", field("steady", "deliveries_per_server_cpu_s")),
        (
            "  steady: other programs on the server core (%)",
            field("steady", "others_on_server_cores", 0, 100),
        ),
        (f"steady {s['steady_large_subscribers']:,} subs: p50 ms", field("steady-5k", "p50_ms", 1)),
        ("  steady-5k: p99 ms", field("steady-5k", "p99_ms", 1)),
        ("  steady-5k: lost / duplicated", lost_dup("steady-5k")),
        ("  steady-5k: server CPU busy (share of its core)", field("steady-5k", "server_cpu", 0, 100)),
        ("  steady-5k: deliveries per server CPU-second", field("steady-5k", "deliveries_per_server_cpu_s")),
        (
            "  steady-5k: other programs on the server core (%)",
            field("steady-5k", "others_on_server_cores", 0, 100),
        ),
        (
            f"connects/s ({s['connect_connections']:,} conns, {s['concurrency']} in flight)",
            field("connect", "connects_per_s"),
        ),
        (
            f"idle RSS KiB per connection (at {s['memory_connections']:,})",
            field("memory", "kib_per_connection", 1),
        ),
        (f"  connects/s while opening {s['memory_connections']:,}", field("memory", "connects_per_s")),
        ("idle server CPU, no connections (% of one core)", field("memory", "idle_server_cpu", 1, 100)),
        (f"2 processes + Redis deliveries/s ({redis})", field("redis", "deliveries_per_s")),
        ("  2 processes: lost / duplicated", lost_dup("redis")),
        ("  2 processes: server CPU busy (sum, % of one core)", field("redis", "server_cpu", 0, 100)),
        ("2 processes + Redis, steady: p50 ms", field("redis-steady", "p50_ms", 1)),
        ("  2 processes steady: p99 ms", field("redis-steady", "p99_ms", 1)),
        ("  2 processes steady: lost / duplicated", lost_dup("redis-steady")),
        (
            "  2 processes steady: deliveries per server CPU-second",
            field("redis-steady", "deliveries_per_server_cpu_s"),
        ),
    ]


def render(results: dict[str, Any], meta: dict[str, Any], goals: list[dict[str, Any]]) -> str:
    kinds = [k for k in KINDS if k in results]
    if not kinds and not results:
        return "no results"
    lines: list[str] = []
    machine = meta.get("machine", {})
    versions = meta.get("versions", {})
    lines.append("")
    lines.append(
        f"bench.fanout  run {meta.get('run_id')}  {'--quick' if meta.get('quick') else 'full'}  "
        f"wall {meta.get('wall_s')}s"
    )
    lines.append(
        f"machine: {machine.get('nproc')} CPUs ({machine.get('cpu', '?')}), load avg at start "
        f"{', '.join(f'{x:.2f}' for x in machine.get('loadavg_at_start', ()))}; "
        + (
            "each server process on a core of its own, load generator and nginx not pinned"
            if meta.get("spread")
            else f"servers on CPU {meta.get('server_cores')}, "
            f"load generator on CPU {meta.get('loadgen_cores')}"
            + (", nginx on the load generator's" if meta.get("proxy_cores") == "load" else "")
        )
        + (f", nice {meta['nice']}" if meta.get("nice") else "")
    )
    if versions:
        lines.append(
            "versions: "
            + ", ".join(
                f"{n} {versions.get(n)}"
                for n in (
                    "python",
                    "Django",
                    "channels",
                    "daphne",
                    "Twisted",
                    "uvicorn",
                    "uvloop",
                    "websockets",
                )
                if versions.get(n)
            )
            + f", channels_redis {versions.get('channels_redis')}, redis-py {versions.get('redis')}"
        )
    lines.extend(_table(results, meta, kinds) if kinds else [])
    lines.extend(render_scale(results, meta))
    if goals:
        lines.append("")
        if meta.get("quick"):
            lines.append("goals (from the issue; measured, not asserted; --quick sizes are indicative only):")
        else:
            lines.append("goals (from the issue; measured, not asserted):")
        for goal in goals:
            mark = {True: "MET ", False: "MISS", None: "n/a "}[goal["met"]]
            lines.append(f"  [{mark}] {goal['server']:<13} {goal['goal']}: {goal['detail']}")
    errors = [
        f"  {kind} {scenario}: {value.get('error')}"
        for kind, scenarios in results.items()
        for scenario, value in scenarios.items()
        if isinstance(value, dict) and value.get("error")
    ]
    if errors:
        lines.append("")
        lines.append("errors:")
        lines.extend(e[:800] for e in errors)
    return "\n".join(lines)


def _table(results: dict[str, Any], meta: dict[str, Any], kinds: list[str]) -> list[str]:
    lines = [""]
    rows = _rows(results, meta)
    labels = [KINDS[k].label for k in kinds]
    first = max(len(label) for label, _ in rows)
    widths = [max(len(label), 12) for label in labels]
    lines.append(
        " " * first + "  " + "  ".join(label.rjust(w) for label, w in zip(labels, widths, strict=True))
    )
    for label, cell in rows:
        cells = [cell(kind) for kind in kinds]
        if all(c == "-" for c in cells):
            continue
        lines.append(
            label.ljust(first) + "  " + "  ".join(c.rjust(w) for c, w in zip(cells, widths, strict=True))
        )
    ratio_lines = _ratios(results, kinds)
    if ratio_lines:
        lines.append("")
        lines.extend(ratio_lines)
    return lines


def _ratios(results: dict[str, Any], kinds: list[str]) -> list[str]:
    ours = [k for k in kinds if KINDS[k].role == "ours"]
    lines: list[str] = []
    metrics = (
        ("burst", "deliveries_per_s", "burst deliveries/s", False),
        ("connect", "connects_per_s", "connects/s", False),
        ("memory", "kib_per_connection", "RSS/conn", True),
        ("steady", "p99_ms", "steady p99", True),
        ("steady", "deliveries_per_server_cpu_s", "steady deliveries/CPU-s", False),
        ("steady-5k", "deliveries_per_server_cpu_s", "steady-5k deliveries/CPU-s", False),
        ("redis", "deliveries_per_s", "2-proc+Redis deliveries/s", False),
    )
    for base, title in ((REFERENCE, "reference (tutorial/daphne)"), (CEILING, "ceiling (websockets)")):
        if base not in results:
            continue
        for kind in ours:
            parts = []
            for scenario, key, name, lower_is_better in metrics:
                r = _ratio(_get(results, kind, scenario, key), _get(results, base, scenario, key))
                if r is not None:
                    parts.append(f"{name} {r:.2f}x" + (" (lower is better)" if lower_is_better else ""))
            if parts:
                lines.append(f"{KINDS[kind].label} / {title}: " + "; ".join(parts))
    return lines


def evaluate_goals(results: dict[str, Any], meta: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per (our server, goal): met True/False, or None when not measured."""
    goals: list[dict[str, Any]] = scale_goals(results)
    ours = [k for k in KINDS if k in results and KINDS[k].role == "ours"]
    ref_burst = _get(results, REFERENCE, "burst", "deliveries_per_s")
    for kind in ours:
        burst = _get(results, kind, "burst", "deliveries_per_s")
        if "burst" in results.get(kind, {}):
            ratio = _ratio(burst, ref_burst)
            goals.append(
                {
                    "server": kind,
                    "goal": f"burst >= {BURST_VS_REFERENCE:g}x tutorial reference",
                    "met": None if ratio is None else ratio >= BURST_VS_REFERENCE,
                    "detail": "reference not measured"
                    if ratio is None
                    else f"{burst:,.0f}/s vs {ref_burst:,.0f}/s = {ratio:.1f}x",
                }
            )
        steady = results.get(kind, {}).get("steady")
        if isinstance(steady, dict):
            p99 = steady.get("p99_ms")
            lost = steady.get("lost")
            dup = steady.get("duplicates")
            met = None if p99 is None else (p99 <= STEADY_P99_MS and lost == 0 and dup == 0)
            if p99 is None and lost:
                met = False
            goals.append(
                {
                    "server": kind,
                    "goal": f"steady p99 <= {STEADY_P99_MS:g} ms, nothing lost",
                    "met": met,
                    "detail": steady.get("error") or f"p99 {_num(p99, 1)} ms, lost {lost}, duplicated {dup}",
                }
            )
        memory = results.get(kind, {}).get("memory")
        if isinstance(memory, dict):
            per = memory.get("kib_per_connection")
            at = meta["sizes"]["memory_connections"]
            goals.append(
                {
                    "server": kind,
                    "goal": f"idle <= {IDLE_KIB_PER_CONNECTION:g} KiB/connection at {at:,}",
                    "met": None if per is None else per <= IDLE_KIB_PER_CONNECTION,
                    "detail": memory.get("error")
                    or (
                        "not measured"
                        if per is None
                        else f"{per:.1f} KiB ({per * 1024:,.0f} bytes) per connection"
                    ),
                }
            )
        redis = results.get(kind, {}).get("redis")
        if isinstance(redis, dict):
            rate = redis.get("deliveries_per_s")
            lost = redis.get("lost")
            dup = redis.get("duplicates")
            if rate is None:
                goals.append(
                    {
                        "server": kind,
                        "goal": "2 processes + Redis",
                        "met": False,
                        "detail": redis.get("error"),
                    }
                )
            else:
                ok = lost == 0 and dup == 0 and burst is not None and rate >= burst
                goals.append(
                    {
                        "server": kind,
                        "goal": "2 processes + Redis: nothing lost/duplicated, >= 1-process burst",
                        "met": ok if burst is not None else None,
                        "detail": f"{rate:,.0f}/s vs 1-process {_num(burst)}/s, "
                        f"lost {lost}, duplicated {dup}",
                    }
                )
        goals.extend(_ceiling_goals(results, kind))
    return goals


def _ceiling_goals(results: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The steady fan-out goals of one of our servers, as ratios to the ceiling of the same run."""

    def versus(
        goal: str, scenario: str, key: str, bound: float, at_least: bool, base: str = CEILING
    ) -> dict[str, Any] | None:
        if scenario not in results.get(kind, {}):
            return None
        ours, theirs = _get(results, kind, scenario, key), _get(results, base, scenario, key)
        ratio = _ratio(ours, theirs)
        if ratio is None:
            detail = _get(results, kind, scenario, "error") or "not measured (or no ceiling in this run)"
            return {"server": kind, "goal": goal, "met": None, "detail": detail}
        met = ratio >= bound if at_least else ratio <= bound
        lost = _get(results, kind, scenario, "lost")
        dup = _get(results, kind, scenario, "duplicates")
        if lost or dup:
            met = False
        detail = f"{_num(ours, 1)} vs {_num(theirs, 1)} = {ratio:.2f}x"
        if lost is not None:
            detail += f"; lost {lost}, duplicated {dup}"
        return {"server": kind, "goal": goal, "met": met, "detail": detail}

    one_process = results.get(kind, {})
    checks = [
        versus(
            f"steady deliveries per server CPU-s >= {STEADY_CPU_VS_CEILING:g}x ceiling",
            "steady",
            "deliveries_per_server_cpu_s",
            STEADY_CPU_VS_CEILING,
            True,
        ),
        versus(
            f"steady p99 <= {STEADY_P99_VS_CEILING:g}x ceiling, nothing lost",
            "steady",
            "p99_ms",
            STEADY_P99_VS_CEILING,
            False,
        ),
        versus(
            f"steady-5k deliveries per server CPU-s >= {STEADY_CPU_VS_CEILING:g}x ceiling",
            "steady-5k",
            "deliveries_per_server_cpu_s",
            STEADY_CPU_VS_CEILING,
            True,
        ),
        versus(
            f"steady-5k p99 <= {STEADY_P99_VS_CEILING:g}x ceiling, nothing lost",
            "steady-5k",
            "p99_ms",
            STEADY_P99_VS_CEILING,
            False,
        ),
        versus(
            f"burst deliveries/s >= {BURST_VS_CEILING:g}x ceiling",
            "burst",
            "deliveries_per_s",
            BURST_VS_CEILING,
            True,
        ),
        versus(
            f"connects/s while opening the memory scenario's >= {CONNECTS_VS_CEILING:g}x ceiling",
            "memory",
            "connects_per_s",
            CONNECTS_VS_CEILING,
            True,
        ),
        versus(
            f"idle RSS per connection <= {MEMORY_VS_CEILING:g}x ceiling",
            "memory",
            "kib_per_connection",
            MEMORY_VS_CEILING,
            False,
        ),
    ]
    if "redis-steady" in one_process:
        ours = _get(results, kind, "redis-steady", "deliveries_per_server_cpu_s")
        single = _get(results, kind, "steady", "deliveries_per_server_cpu_s")
        ratio = _ratio(ours, single)
        lost = _get(results, kind, "redis-steady", "lost")
        dup = _get(results, kind, "redis-steady", "duplicates")
        checks.append(
            {
                "server": kind,
                "goal": f"2 processes + Redis steady deliveries per server CPU-s >= {REDIS_STEADY_VS_ONE:g}x "
                "1 process",
                "met": None if ratio is None else (ratio >= REDIS_STEADY_VS_ONE and not lost and not dup),
                "detail": _get(results, kind, "redis-steady", "error")
                or (
                    "not measured"
                    if ratio is None
                    else f"{ours:,.0f} vs {single:,.0f} = {ratio:.2f}x; lost {lost}, duplicated {dup}"
                ),
            }
        )
    return [check for check in checks if check is not None]
