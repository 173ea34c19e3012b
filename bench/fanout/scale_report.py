"""The scale-out figures and goals (issue: one site on many processes, behind a real proxy)."""

from __future__ import annotations

from typing import Any

KIND = "scale"
PER_CPU_VS_ONE = 0.85  # 2 processes + Redis behind nginx, per server CPU-second, at least
GLOBAL_TOLERANCE = 0.05  # admitted join rate within ±5 % of the configured one
IDLE_CONNECTIONS = 20000
# The reference is "one process without the proxy": on the embedded default
# (in-memory layer and cache), and the same process on Redis (what Redis alone costs).
REFERENCES = {
    "fanout-1": "1 process",
    "joins-1": "1 process",
    "fanout-1r": "1 process + Redis",
    "joins-1r": "1 process + Redis",
}


FANOUT_ROWS = (
    ("fanout-1", "1 process, no proxy"),
    ("fanout-1r", "1 process + Redis, no proxy"),
    ("fanout-2", "2 processes + Redis, nginx"),
)
PRIVATE_ROWS = (
    ("private-1", "1 process, no proxy"),
    ("private-1r", "1 process + Redis, no proxy"),
    ("private-2", "2 processes + Redis, nginx"),
)
JOIN_ROWS = (
    ("joins-1", "1 process, no proxy"),
    ("joins-1r", "1 process + Redis, no proxy"),
    ("joins-2", "2 processes + Redis, nginx"),
)


def _n(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _get(scale: dict[str, Any], scenario: str, key: str) -> Any:
    value = scale.get(scenario)
    return value.get(key) if isinstance(value, dict) else None


def _ratio(a: Any, b: Any) -> float | None:
    return a / b if a and b else None


def render_scale(results: dict[str, Any], meta: dict[str, Any]) -> list[str]:
    scale = results.get(KIND) or {}
    if not scale:
        return []
    lines = ["", f"scale-out ({meta.get('scale_server', '?')}; 2 processes share a Redis of the run's own):"]
    for scenario, label in FANOUT_ROWS:
        r = scale.get(scenario)
        if not isinstance(r, dict) or "delivered" not in r:
            continue
        proxy = (
            f"; nginx {_n(r.get('proxy_cpu_s'), 2)} CPU-s = {_n(r.get('deliveries_per_proxy_cpu_s'))}/CPU-s"
            if r.get("proxy_cpu_s") is not None
            else ""
        )
        lines.append(
            f"  fan-out {label}: {r['subscribers']} x {r['events']}: {_n(r.get('deliveries_per_s'))}/s, "
            f"{_n(r.get('deliveries_per_server_cpu_s'))} per server CPU-s, lost {r.get('lost')} "
            f"dup {r.get('duplicates')}{proxy}"
        )
    for scenario, label in PRIVATE_ROWS:
        r = scale.get(scenario)
        if not isinstance(r, dict) or "delivered" not in r:
            continue
        lines.append(
            f"  private channels {label}: {r['subscribers']} x {r['events']} "
            f"({r.get('publishes')} publishes): {_n(r.get('deliveries_per_s'))}/s, "
            f"{_n(r.get('deliveries_per_server_cpu_s'))} per server CPU-s, "
            f"lost {r.get('lost')} dup {r.get('duplicates')}"
        )
    for scenario in ("fanout-2", "fanout-2-small", "private-2"):
        redis = _get(scale, scenario, "redis")
        if redis:
            top = ", ".join(f"{k} {v}" for k, v in list(redis["calls"].items())[:8])
            lines.append(
                f"  Redis per publish at {_get(scale, scenario, 'subscribers')} subscribers: "
                f"{redis['calls_per_publish']:.1f} commands ({top}); Redis CPU {redis['cpu_s']:.3f} s"
            )
    for scenario, label in JOIN_ROWS:
        r = scale.get(scenario)
        if not isinstance(r, dict) or "joins" not in r:
            continue
        proxy = f"; nginx {_n(r.get('proxy_cpu_s'), 2)} CPU-s" if r.get("proxy_cpu_s") is not None else ""
        lines.append(
            f"  joins {label}: {r['joins']} admitted, {_n(r.get('joins_per_s'))}/s, "
            f"{_n(r.get('joins_per_server_cpu_s'))} per server CPU-s, p99 {_n(r.get('p99_201_ms'))} ms, "
            f"statuses {r.get('statuses')}, stored = 201s: {r.get('stored_match')}{proxy}"
        )
        if r.get("levels"):
            levels = ", ".join(
                f"{level['loops']}: {_n(level.get('joins_per_s'))}/s "
                f"{_n(level.get('joins_per_server_cpu_s'))}/CPU-s"
                for level in r["levels"]
            )
            lines.append(f"    levels (loops: joins/s, per server CPU-s): {levels}")
    g = scale.get("scale-global")
    if isinstance(g, dict) and "admitted_rate" in g:
        lines.append(
            f"  global join rate, 2 processes: offered {_n(g.get('offered_rate'))}/s for "
            f"{_n(g.get('seconds'), 1)} s, statuses {g.get('statuses')}, admitted "
            f"{_n(g.get('admitted_rate'), 1)}/s vs {_n(g.get('configured_rate'))}/s configured, "
            f"stored = 201s: {g.get('stored_match')}"
        )
    i = scale.get("idle-20k")
    if isinstance(i, dict) and "open" in i:
        lines.append(
            f"  idle: {i['open']:,} connections over {i.get('processes')} processes "
            f"(RSS {_n(i.get('rss_base_kib', 0) / 1024, 1)} -> "
            f"{_n(i.get('rss_at_full_kib', 0) / 1024, 1)} MiB): "
            f"{_n(i.get('kib_per_connection'), 1)} KiB per connection (at "
            f"{i.get('calibration_connections')}: {_n(i.get('kib_per_connection_calibration'), 1)}); "
            f"RSS measured / predicted {_n(i.get('rss_measured_vs_predicted'), 3)}; idle server CPU "
            f"{_n((i.get('idle_server_cpu') or 0) * 100, 1)} %"
        )
        if "delivered" in i:
            redis = i.get("redis") or {}
            lines.append(
                f"  fan-out to all of them: {i.get('delivered'):,} of {i.get('expected'):,} delivered, "
                f"lost {i.get('lost')} dup {i.get('duplicates')}; {_n(i.get('deliveries_per_server_cpu_s'))} "
                f"per server CPU-s; Redis {_n(redis.get('calls_per_publish'), 1)} commands per publish"
            )
        paced = i.get("paced")
        if isinstance(paced, dict):
            lines.append(
                f"  then {paced['publish']['events']} events at 2/s: "
                f"{_n(paced.get('deliveries_per_server_cpu_s'))} per server CPU-s "
                f"({_n(paced.get('deliveries_per_server_cpu_s_net_of_idle'))} net of the idle CPU); "
                f"Redis {_n((paced.get('redis') or {}).get('calls_per_publish'), 1)} commands per publish"
            )
    return lines


def scale_goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    scale = results.get(KIND) or {}
    goals: list[dict[str, Any]] = []

    def per_cpu(name: str, key: str, one: str, two: str, exact: bool) -> None:
        if one not in scale or two not in scale:
            return
        a, b = _get(scale, one, key), _get(scale, two, key)
        ratio = _ratio(b, a)
        clean = True
        if exact:
            clean = _get(scale, one, "lost") == 0 == _get(scale, two, "lost") and (
                _get(scale, one, "duplicates") == 0 == _get(scale, two, "duplicates")
            )
        else:
            clean = bool(_get(scale, one, "stored_match")) and bool(_get(scale, two, "stored_match"))
        goals.append(
            {
                "server": "2 + nginx",
                "goal": f"{name} per server CPU-s >= {PER_CPU_VS_ONE:.0%} of {REFERENCES[one]}"
                + (", 0 lost / 0 dup" if exact else ", stored = 201s"),
                "met": None if ratio is None else ratio >= PER_CPU_VS_ONE and clean,
                "detail": "not measured"
                if ratio is None
                else f"{_n(b)} vs {_n(a)} = {ratio:.0%}" + ("" if clean else " (NOT CLEAN)"),
            }
        )

    for suffix in ("1", "1r"):
        per_cpu("fan-out", "deliveries_per_server_cpu_s", f"fanout-{suffix}", "fanout-2", True)
        per_cpu("joins", "joins_per_server_cpu_s", f"joins-{suffix}", "joins-2", False)
    two = scale.get("joins-2")
    if isinstance(two, dict) and two.get("per_process_best") and "joins-1" in scale:
        # Not the goal's figure: the same loops per process (each process batches
        # what one process batched), beside the goal's same loops in all.
        a = _get(scale, "joins-1", "joins_per_server_cpu_s")
        b = two["per_process_best"].get("joins_per_server_cpu_s")
        ratio = _ratio(b, a)
        goals.append(
            {
                "server": "2 + nginx",
                "goal": f"(info) joins per server CPU-s, same loops per process, vs {REFERENCES['joins-1']}",
                "met": None,
                "detail": "not measured"
                if ratio is None
                else f"{_n(b)} ({two['per_process_best'].get('loops')} loops) vs {_n(a)} = {ratio:.0%}",
            }
        )
    g = scale.get("scale-global")
    if isinstance(g, dict):
        off = g.get("admitted_vs_configured")
        goals.append(
            {
                "server": "2 + Redis",
                "goal": f"global join rate within ±{GLOBAL_TOLERANCE:.0%} at 3x",
                "met": None if off is None else abs(off) <= GLOBAL_TOLERANCE and bool(g.get("stored_match")),
                "detail": "not measured" if off is None else f"{off:+.1%}",
            }
        )
    i = scale.get("idle-20k")
    if isinstance(i, dict):
        opened = i.get("open")
        goals.append(
            {
                "server": "2 + Redis",
                "goal": f">= {IDLE_CONNECTIONS:,} idle connections",
                "met": None if opened is None else opened >= IDLE_CONNECTIONS,
                "detail": "not measured"
                if opened is None
                else f"{opened:,} open, {_n(i.get('kib_per_connection'), 1)} KiB each",
            }
        )
    return goals
