"""A very short run of the soak test (``python -m bench.soak``): it starts, measures and judges.

50 connections for 10 seconds against a daphne the command starts itself, sampled every second.
The full run (1,000 connections, 5 minutes) and its results: docs/BENCHMARKS.md, "Soak".
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, _python

pytestmark = pytest.mark.e2e

RUN_TIMEOUT = 50.0


def test_a_short_soak_run_passes_and_reports_every_sample(tmp_path: Path) -> None:
    report = tmp_path / "soak.json"
    command = [
        _python(),
        "-m",
        "bench.soak",
        "--connections",
        "50",
        "--seconds",
        "10",
        "--sample-interval",
        "1",
        "--no-pin",
        "--json",
        str(report),
    ]
    result = subprocess.run(
        command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    output = f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    assert result.returncode == 0, output
    assert result.stdout.rstrip().endswith("VERDICT: PASS"), output

    summary = json.loads(report.read_text())
    assert summary["verdict"] == "PASS"
    assert all(summary["checks"].values()), summary["checks"]
    # A row at the start and one per second after it.
    assert [round(sample["t"]) for sample in summary["samples"]] == list(range(11))
    assert summary["published"] == 100
    assert summary["missing"] == summary["duplicated"] == 0
    # 50 connections x 3 subscriptions over 10 channels: 15 subscribers per event, some churned.
    assert summary["expected"] > 1000 and summary["deliveries"] >= summary["expected"]
    assert summary["rss_baseline_mib"] > 0
