"""Who used the CPU during a phase: the server, this load generator, everything else.

On a shared machine a benchmark is only as good as its quiet: each phase's
figures come with the server's and the load generator's share of a core and
what other processes took meanwhile (Linux ``/proc``; elsewhere nothing is reported).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from time import perf_counter

TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass(frozen=True)
class Snapshot:
    at: float
    machine_busy: float | None  # seconds of all cores busy
    own: float  # seconds of this process
    server: float | None  # seconds of the server process


def _machine_busy() -> float | None:
    try:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except OSError:
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / TICKS


def _process(pid: int | None) -> float | None:
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rpartition(")")[2].split()
    except OSError:
        return None
    # utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    return (int(fields[11]) + int(fields[12])) / TICKS


def snapshot(server_pid: int | None) -> Snapshot:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(perf_counter(), _machine_busy(), usage.ru_utime + usage.ru_stime, _process(server_pid))


def describe(start: Snapshot, end: Snapshot) -> str:
    """``server 93%, load generator 41%, other processes 12% (of one core each)``."""
    wall = max(end.at - start.at, 1e-9)
    own = (end.own - start.own) / wall
    parts = []
    server = None
    if start.server is not None and end.server is not None:
        server = (end.server - start.server) / wall
        parts.append(f"server {server:.0%}")
    parts.append(f"load generator {own:.0%}")
    if start.machine_busy is not None and end.machine_busy is not None:
        others = (end.machine_busy - start.machine_busy) / wall - own - (server or 0.0)
        label = "other processes" if server is not None else "server + other processes"
        parts.append(f"{label} {max(others, 0.0):.0%}")
    return ", ".join(parts) + f" of a core, over {wall:.1f} s ({os.cpu_count()} cores)"
