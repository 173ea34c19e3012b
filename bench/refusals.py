"""What a refusal costs a server at best: ``python -m bench.refusals --port P --pid PID``.

Closed loops of quiz joins on kept-alive connections, each from a loopback address of
its own, against a running server whose joins are all refused (start it with
``QUIZ_JOIN_RATE_PER_CLIENT=1/h``: each client's first join goes through, to a game that
does not exist, and every later one is refused by its rate). Prints the answers per
second by status and, with ``--pid``, the server's CPU time per answer over the run
(``/proc/<pid>/stat``). docs/BENCHMARKS.md, "Crowd-proof entry", has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from typing import cast

BODY = b'{"nickname": "x"}'
REQUEST = (
    b"POST /api/quiz/games/NOGAME/join HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY
)


class Loop(asyncio.Protocol):
    """One closed loop: a join, its answer read whole, the next join, until ``until``."""

    def __init__(self, statuses: Counter[int], until: float) -> None:
        self.statuses = statuses
        self.until = until
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as one.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(REQUEST)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while b"\r\n\r\n" in self.buffer:
            head, _, rest = self.buffer.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            length = next(
                int(line.split(b":", 1)[1]) for line in lines if line.lower().startswith(b"content-length:")
            )
            if len(rest) < length:
                return
            self.statuses[int(lines[0].split(b" ")[1])] += 1
            self.buffer = rest[length:]
            if time.monotonic() < self.until:
                self.transport.write(REQUEST)
            else:
                self.transport.close()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run(port: int, connections: int, seconds: float) -> Counter[int]:
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()
    until = time.monotonic() + seconds
    for n in range(connections):
        address = f"127.0.{1 + n // 250}.{1 + n % 250}"
        await loop.create_connection(
            lambda: Loop(statuses, until), "127.0.0.1", port, local_addr=(address, 0)
        )
    await asyncio.sleep(max(0.0, until - time.monotonic()) + 1.0)
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, help="the server's process, for its CPU time per answer")
    parser.add_argument("--connections", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    before = cpu_seconds(args.pid) if args.pid else 0.0
    try:
        import uvloop

        statuses = uvloop.run(run(args.port, args.connections, args.seconds))
    except ImportError:
        statuses = asyncio.run(run(args.port, args.connections, args.seconds))
    per_second = {status: round(count / args.seconds) for status, count in sorted(statuses.items())}
    print(f"answers per second by status: {per_second}")
    if args.pid:
        used = cpu_seconds(args.pid) - before
        answers = sum(statuses.values())
        each = f", {used / answers * 1e6:.1f} µs per answer" if answers else ""
        print(f"server CPU: {used:.2f} s over {args.seconds:g} s{each}")


if __name__ == "__main__":
    main()
