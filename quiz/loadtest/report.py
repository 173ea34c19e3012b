"""Figures and checks: percentiles, aligned lines, PASS/FAIL with a reason."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100), nearest rank; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 1000:.1f} ms"


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    goal: bool = False  # a performance goal rather than a correctness property


@dataclass
class Report:
    figures: list[tuple[str, str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)

    def figure(self, name: str, value: str) -> None:
        self.figures.append((name, value))

    def check(self, name: str, ok: bool, detail: str = "", *, goal: bool = False) -> bool:
        self.checks.append(Check(name, bool(ok), detail, goal))
        return bool(ok)

    @property
    def passed(self) -> bool:
        return all(check.ok for check in self.checks)

    def waive_goals(self) -> None:
        """``--no-goals``: a missed speed goal is reported but does not fail the run."""
        for check in self.checks:
            if check.goal and not check.ok:
                check.ok = True
                check.detail += " (goal missed; --no-goals)"

    def render(self) -> str:
        lines: list[str] = []
        if self.figures:
            width = max(len(name) for name, _ in self.figures)
            lines.append("Figures")
            lines.extend(f"  {name.ljust(width)}  {value}" for name, value in self.figures)
        if self.checks:
            lines.append("Checks")
            for check in self.checks:
                verdict = "PASS" if check.ok else "FAIL"
                kind = "goal " if check.goal else ""
                detail = f" — {check.detail}" if check.detail else ""
                lines.append(f"  {verdict}  {kind}{check.name}{detail}")
            failed = sum(not check.ok for check in self.checks)
            lines.append(f"{len(self.checks) - failed} checks passed, {failed} failed")
        return "\n".join(lines)
