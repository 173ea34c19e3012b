"""A reduced run of the fan-out benchmark (``python -m bench.fanout --quick``): it starts the
servers and the load generator, measures, and every delivery of ours arrives exactly once.

Figures are not judged here (shared machines are noisy): docs/BENCHMARKS.md has the full runs.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, _python

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 170.0


@pytest.mark.timeout(RUN_TIMEOUT + 10)
def test_a_quick_benchmark_run_measures_everything_and_loses_nothing(tmp_path: Path) -> None:
    report = tmp_path / "bench.json"
    command = [
        _python(),
        "-m",
        "bench.fanout",
        "--quick",
        "--servers",
        "ours-daphne",
        "ref-daphne",
        "--scenarios",
        "burst",
        "steady",
        "steady-5k",
        "redis",
        "redis-steady",
        "--json",
        str(report),
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    results = json.loads(report.read_text())["results"]
    assert sorted(results) == ["ours-daphne", "ref-daphne"]
    assert sorted(results["ours-daphne"]) == ["burst", "redis", "redis-steady", "steady", "steady-5k"]
    for scenario, figures in results["ours-daphne"].items():
        assert (scenario, figures["delivered"], figures["lost"], figures["duplicates"]) == (
            scenario,
            figures["expected"],
            0,
            0,
        )
        assert figures["deliveries_per_s"] > 0
    # The reference delivers its burst exactly once too; its steady losses are its own (BENCHMARKS).
    reference = results["ref-daphne"]["burst"]
    assert (reference["lost"], reference["duplicates"]) == (0, 0)
