"""``python -m bench.restart``: a verified game through nginx while one of 2 server processes is replaced.

    DATABASE_URL=postgres://... REDIS_URL=redis://... python -m bench.restart --players 2000

Starts ``manage.py realtime_serve --processes 2 --command quiz_worker`` (trusting nginx for the
client address) and nginx from deploy/nginx in front of it, then ``quiz_loadtest`` through nginx.
Once ``--restart-at`` of the first question's answers are stored, ``SIGTERM`` goes to the first
server process: it drains (its WebSockets are closed with 1001 and reconnect through nginx to the
other process, its requests under way finish) and the supervisor starts it again. The load
test's own checks decide (every admitted join stored, every accepted answer stored and scored
exactly once, every player's score right, every question and score heard); its report and the
drain's log lines are printed. Exit status: the load test's.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import nginx

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(REPO_ROOT / ".venv" / "bin" / "python") if (REPO_ROOT / ".venv").exists() else sys.executable


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=2000)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--answer-window", type=float, default=5.0)
    parser.add_argument("--restart-at", type=float, default=0.3, help="Share of the players' first answers.")
    parser.add_argument("--nice", type=int, default=0, help="Niceness of the site's processes (e.g. -5).")
    parser.add_argument("--no-restart", action="store_true", help="The reference: the same game, no restart.")
    args = parser.parse_args()
    if not os.environ.get("DATABASE_URL", "").startswith("postgres") or not os.environ.get("REDIS_URL"):
        parser.error("set DATABASE_URL (PostgreSQL) and REDIS_URL")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DEBUG": "0",
        "ALLOWED_HOSTS": "*",
        "TRUSTED_PROXIES": "127.0.0.1",
        "PYTHONUNBUFFERED": "1",
    }
    prefix = ["nice", "-n", str(args.nice)] if args.nice else []
    subprocess.run(
        [PYTHON, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=REPO_ROOT, env=env, check=True
    )
    workdir = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    log_path = workdir / "serve.log"
    with log_path.open("wb") as log:
        site = subprocess.Popen(
            [*prefix, PYTHON, "manage.py", "realtime_serve", "--processes", "2", "--port", "0",
             "--command", "quiz_worker"],
            cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    proxy: nginx.Nginx | None = None
    try:
        port = int(_wait_log(log_path, r"listening on 127\.0\.0\.1:(\d+)", 1, site)[0])
        _wait_log(log_path, r"realtime_serve: ready", 2, site)
        proxy = nginx.start_nginx(workdir, port, prefix=prefix)
        baseline = _answers()
        loadtest = subprocess.Popen(
            [PYTHON, "manage.py", "quiz_loadtest", "--url", proxy.http_url, "--players", str(args.players),
             "--questions", str(args.questions), "--answer-window", str(args.answer_window),
             "--join-bench", "0", "--no-goals"],
            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        wanted = max(1, int(args.players * args.restart_at))
        while not args.no_restart and _answers() - baseline < wanted:
            if loadtest.poll() is not None:
                print("the load test ended before the restart", file=sys.stderr)
                break
            time.sleep(0.1)
        if not args.no_restart and loadtest.poll() is None:
            pid = int(_wait_log(log_path, r"server-1 started \(pid (\d+)\)", 1, site)[0])
            restarted_at = time.monotonic()
            print(f"SIGTERM to server-1 (pid {pid}) after {_answers() - baseline} answers", flush=True)
            os.kill(pid, signal.SIGTERM)
            _wait_log(log_path, r"realtime_serve: ready", 3, site, within=120)
            print(
                f"server-1 replaced and ready {time.monotonic() - restarted_at:.1f} s after SIGTERM",
                flush=True,
            )
        output, _ = loadtest.communicate()
        print(output)
        for line in log_path.read_text(errors="replace").splitlines():
            if "draining" in line or "exited" in line or "Traceback" in line:
                print(line)
        return loadtest.returncode
    finally:
        if proxy is not None:
            proxy.stop()
        site.send_signal(signal.SIGTERM)
        site.wait(timeout=60)


def _answers() -> int:
    import psycopg

    with psycopg.connect(os.environ["DATABASE_URL"], autocommit=True) as conn:
        row = conn.execute("SELECT coalesce(max(id), 0) FROM quiz_answer").fetchone()
    return int(row[0]) if row else 0


def _wait_log(
    path: Path, pattern: str, count: int, site: subprocess.Popen[bytes], within: float = 90
) -> list[str]:
    deadline = time.monotonic() + within
    while True:
        found = re.findall(pattern, path.read_text(errors="replace"))
        if len(found) >= count:
            return found
        if site.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"never logged {pattern!r} ×{count}:\n{path.read_text(errors='replace')}")
        time.sleep(0.1)


sys.exit(main())
