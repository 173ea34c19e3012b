"""The command line: ``python -m bench.soak --connections 1000 --minutes 5 [--rate 10]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from .run import run_soak
from .server import WS_PATH, Server, SetupError, external_server, start_server

MAX_CONNECTIONS = 20_000
MAX_MINUTES = 180.0
MAX_RATE = 1_000.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak",
        description="Hold many subscribers under steady publishing; watch the server's memory and latency.",
    )
    parser.add_argument("--connections", type=int, default=1000)
    duration = parser.add_mutually_exclusive_group()
    duration.add_argument("--minutes", type=float, default=5.0)
    duration.add_argument("--seconds", type=float, help="instead of --minutes (smoke runs)")
    parser.add_argument("--rate", type=float, default=10.0, help="publishes per second (one event each)")
    parser.add_argument("--channels", type=int, default=10)
    parser.add_argument("--subscriptions", type=int, default=3, help="per connection, distinct channels")
    parser.add_argument("--churn", type=float, default=1.0, help="connections replaced per second")
    parser.add_argument("--event-bytes", type=int, default=100)
    parser.add_argument("--sample-interval", type=float, default=10.0, help="seconds")
    parser.add_argument("--warmup", type=float, default=None, help="seconds; default min(60, run/5)")
    parser.add_argument("--rss-tolerance", type=float, default=0.10)
    parser.add_argument("--max-p99-ms", type=float, default=None, help="also fail above this p99 latency")
    parser.add_argument("--url", help=f"a running server, ws://127.0.0.1:<port>{WS_PATH}")
    parser.add_argument("--api-key", help="with --url")
    parser.add_argument("--server-pid", type=int, help="with --url; default: the port's listener")
    parser.add_argument("--settings", default="config.settings.base", help="the started server's settings")
    parser.add_argument("--no-pin", dest="pin", action="store_false", help="do not pin server and client")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.seconds is not None:
        args.minutes = args.seconds / 60
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections is 1 to {MAX_CONNECTIONS}")
    if not 0 < args.minutes <= MAX_MINUTES:
        parser.error(f"--minutes is more than 0 and at most {MAX_MINUTES:g}")
    if not 0 < args.rate <= MAX_RATE:
        parser.error(f"--rate is more than 0 and at most {MAX_RATE:g}")
    if not 1 <= args.subscriptions <= args.channels <= 1000:
        parser.error("1 ≤ --subscriptions ≤ --channels ≤ 1000")
    if not 0 <= args.churn <= 100 or args.sample_interval <= 0:
        parser.error("--churn is 0 to 100, --sample-interval more than 0")
    if args.url and not args.api_key:
        parser.error("--url needs --api-key")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = sys.stdout
    server: Server | None = None
    try:
        if args.url:
            server = external_server(args.url, args.api_key, args.server_pid)
        else:
            server = start_server(args.settings, args.pin)
        result = asyncio.run(run_soak(args, server))
    except SetupError as error:
        print(f"soak: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("soak: interrupted", file=sys.stderr)
        return 2
    finally:
        if server is not None:
            failed_server = not server.alive()
            if failed_server and server.log_path is not None:
                print(server.log_tail(), file=sys.stderr)
            server.stop()
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if result["verdict"] == "PASS" else 1
