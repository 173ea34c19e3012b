"""The scale-out scenarios of ``python -m bench.fanout``, reduced: one process alone and two behind
nginx with a Redis of the run's own, private channels, and idle connections held by several load
generators. Every delivery arrives exactly once; the proxy's and Redis's costs are measured.

Figures are not judged here (shared machines are noisy): docs/BENCHMARKS.md has the full runs.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench.fanout.infra import redis_delta
from bench.nginx import DEPLOY
from bench.nginx import render as render_nginx

from .conftest import REPO_ROOT, _python

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 150.0
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")
needs_redis = pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")


@needs_nginx
def test_the_bench_proxies_through_deploy_nginx_with_an_upstream_server_per_process(tmp_path: Path) -> None:
    conf = render_nginx(tmp_path / "nginx", upstream_ports=[18081, 18082], http_port=18080)
    checked = subprocess.run(
        ["nginx", "-t", "-c", str(conf), "-p", str(conf.parent), "-e", str(tmp_path / "e.log")],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert checked.returncode == 0, checked.stderr
    upstream = (conf.parent / "realtime-upstream.conf").read_text()
    servers = [line.strip() for line in upstream.splitlines() if line.strip().startswith("server ")]
    assert servers == ["server 127.0.0.1:18081 max_fails=0;", "server 127.0.0.1:18082 max_fails=0;"]
    text = conf.read_text()
    assert "listen 127.0.0.1:18080 backlog=4096;" in text
    # The shipped locations themselves, not a copy: what the bench measures is what users run.
    assert f"include {DEPLOY / 'realtime-locations.conf'};" in text


def test_redis_deltas_count_the_run_and_leave_out_the_reads_of_the_counters() -> None:
    before = {
        "calls": {"evalsha": 10, "info": 3},
        "cpu_s": 1.0,
        "net_input_bytes": 100,
        "net_output_bytes": 50,
    }
    after = {
        "calls": {"evalsha": 14, "zrange": 2, "info": 9, "get": 5},
        "cpu_s": 1.25,
        "net_input_bytes": 160,
        "net_output_bytes": 90,
    }
    assert redis_delta(before, after) == {
        "calls": {"get": 5, "evalsha": 4, "zrange": 2},
        "total_calls": 11,
        "cpu_s": 0.25,
        "net_input_bytes": 60,
        "net_output_bytes": 40,
    }


def _quick_scale_run(tmp_path: Path, *scenarios: str) -> dict[str, Any]:
    """``bench.fanout --quick`` of ``scenarios`` on ours-daphne; the report's scale results."""
    report = tmp_path / "scale.json"
    command = [
        *(_python(), "-m", "bench.fanout", "--quick", "--servers", "ours-daphne"),
        *("--scenarios", *scenarios, "--json", str(report)),
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    scale: dict[str, Any] = json.loads(report.read_text())["results"]["scale"]
    return scale


@needs_nginx
@needs_redis
@pytest.mark.timeout(RUN_TIMEOUT + 10)
def test_a_quick_scale_run_delivers_exactly_once_behind_nginx(tmp_path: Path) -> None:
    scale = _quick_scale_run(tmp_path, "scale-fanout", "idle-20k")
    fanouts = ["fanout-1", "fanout-1r", "fanout-2", "fanout-2-small", "private-1", "private-1r", "private-2"]
    assert sorted(scale) == sorted([*fanouts, "idle-20k"])
    for name in fanouts:
        figures = scale[name]
        assert (name, figures["delivered"], figures["lost"], figures["duplicates"]) == (
            name,
            figures["expected"],
            0,
            0,
        )
    # Behind the proxy its CPU is measured apart, and Redis counted every command of the burst.
    assert scale["fanout-2"]["proxy_cpu_s"] is not None
    assert scale["fanout-2"]["redis"]["calls_per_publish"] > 0
    assert "redis" not in scale["fanout-1"]
    idle = scale["idle-20k"]
    assert (idle["open"], idle["lost"], idle["duplicates"]) == (400, 0, 0)
    assert idle["kib_per_connection"] > 0
    # 2 events at once, then 2 at the leaderboard's pace: 4 to each of the 400.
    assert (idle["expected"], idle["paced"]["publish"]["publish_acks"]) == (1600, 2)


@needs_nginx
@needs_redis
@pytest.mark.timeout(RUN_TIMEOUT + 10)
def test_a_quick_joins_run_measures_each_level_below_the_in_flight_limit(tmp_path: Path) -> None:
    scale = _quick_scale_run(tmp_path, "scale-joins")
    assert sorted(scale) == ["joins-1", "joins-1r", "joins-2"]
    # One process: the quick levels (4 and 16 loops, below MAX_IN_FLIGHT 64). Two behind
    # nginx: the same loops in all, and the same loops per process (8 and 32).
    expected_levels = {"joins-1": [4, 16], "joins-1r": [4, 16], "joins-2": [4, 8, 16, 32]}
    for name, figures in scale.items():
        levels = figures["levels"]
        assert (name, [level["loops"] for level in levels]) == (name, expected_levels[name])
        # Every 201 is a stored player, and each level measured its own server CPU.
        assert (name, figures["stored_match"]) == (name, True)
        assert all(level["server_cpu_s"] > 0 for level in levels), levels
        # The goal's figure is the best of the same loops in all as one process had.
        assert figures["loops"] in (4, 16)
        assert figures["joins_per_server_cpu_s"] == max(
            level["joins_per_server_cpu_s"] for level in levels if level["loops"] in (4, 16)
        )
    assert scale["joins-2"]["per_process_best"]["loops"] in (8, 32)
    assert "per_process_best" not in scale["joins-1"]
