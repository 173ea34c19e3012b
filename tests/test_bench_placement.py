"""Where the scale-out bench puts its processes: ``--spread`` and ``--proxy-cores`` (docs/BENCHMARKS.md)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from bench.fanout import report
from bench.fanout import servers as srv

Pins = list[tuple[int, set[int]]]


def _pool(monkeypatch: pytest.MonkeyPatch, *, spread: bool) -> tuple[srv.ServerPool, Pins]:
    pins: Pins = []
    pool = srv.ServerPool("python", Path("/nonexistent"), {0}, spread=spread)
    spawned = iter(range(100, 200))
    monkeypatch.setattr(pool, "_spawn", lambda *args: SimpleNamespace(pid=next(spawned)))
    monkeypatch.setattr(pool, "_wait_listening", lambda *args: None)
    monkeypatch.setattr(srv, "pin_process", lambda pid, cores: pins.append((pid, cores)))
    monkeypatch.setattr(srv.os, "sched_getaffinity", lambda pid: {0, 1})
    return pool, pins


def test_spread_pins_each_server_process_to_a_core_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    pool, pins = _pool(monkeypatch, spread=True)
    kind: Any = SimpleNamespace()

    pool.start_many(kind, 3, site=None)

    assert pins == [(100, {0}), (101, {1}), (102, {0})]


def test_without_spread_every_server_process_shares_the_server_core(monkeypatch: pytest.MonkeyPatch) -> None:
    pool, pins = _pool(monkeypatch, spread=False)
    kind: Any = SimpleNamespace()

    pool.start_many(kind, 2, site=None)

    assert pins == [(100, {0}), (101, {0})]


@pytest.mark.parametrize(
    ("meta", "placement"),
    [
        (
            {"server_cores": [0], "loadgen_cores": [1]},
            "servers on CPU [0], load generator on CPU [1], nice 5",
        ),
        (
            {"server_cores": [0], "loadgen_cores": [1], "proxy_cores": "load"},
            "servers on CPU [0], load generator on CPU [1], nginx on the load generator's, nice 5",
        ),
        (
            {"server_cores": [0], "loadgen_cores": None, "spread": True},
            "each server process on a core of its own, load generator and nginx not pinned, nice 5",
        ),
    ],
)
def test_the_report_says_where_the_processes_ran(meta: dict[str, Any], placement: str) -> None:
    machine = {"nproc": 2, "cpu": "test", "loadavg_at_start": [0.5, 0.25, 0.125]}
    text = report.render({"scale": {}}, {"run_id": "r", "machine": machine, "nice": 5, **meta}, [])

    assert f"machine: 2 CPUs (test), load avg at start 0.50, 0.25, 0.12; {placement}" in text.splitlines()
