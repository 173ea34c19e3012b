"""The official Amplify JS ``events`` client (aws-amplify 6.22.1, unmodified) under Node.js.

Amplify always derives a ``wss://`` URL from its endpoint (PROTOCOL §10), so the scripts run
against the TLS daphne, trusting the test CA through ``NODE_EXTRA_CA_CERTS``. Each script prints
one JSON summary line, asserted here in full.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO_ROOT, DaphneServer, RedisServer, _start_daphne, enable_history

pytestmark = [pytest.mark.e2e, pytest.mark.node]

SCRIPTS = Path(__file__).resolve().parent / "amplify"
NODE_TIMEOUT = 40.0

OK = {"ok": True, "value": None}
UNAUTHORIZED_MESSAGE = "You are not authorized to make this call."
# events.post with a wrong key. The name comes from the x-amzn-ErrorType header (PROTOCOL §10);
# the message would come from a top-level "message" in the body, which the AWS error shape
# {"errors":[{errorType,message}]} (PROTOCOL §2.3) does not have, so Amplify says "Unknown error".
POST_UNAUTHORIZED = {"ok": False, "error": {"name": "UnauthorizedException", "message": "Unknown error"}}

# What events.mjs publishes, as each subscription must receive it: in order, each once.
WS_SINGLE = [
    {"message": "Hello world!", "n": 1, "nested": {"ok": True, "none": None}},
    "Hola ¿qué tal? ✓",
    42.5,
    [1, "two", {"three": 3}, [4]],
    True,
    None,
]
WS_BATCH = [{"batch": 1}, "two", 3, [4], False]
HTTP_SINGLE = [{"via": "http", "list": [1, 2]}, "http string", -7, ["a", "b"]]
HTTP_BATCH = [{"batch": "http"}, 0, "last"]
DEEP_EVENT = {"deep": True}
AFTER_REFUSALS = {"still": "open"}


def node_env(server: DaphneServer, extra_env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of an Amplify script (amplify/common.mjs) against ``server``."""
    assert server.ca_file is not None, "Amplify needs the TLS server"
    return {
        **os.environ,
        **(extra_env or {}),
        "RT_EVENT_URL": server.event_url,
        "RT_API_KEY": server.api_key,
        "NODE_EXTRA_CA_CERTS": str(server.ca_file),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def run_node(
    node: str, script: str, server: DaphneServer, extra_env: dict[str, str] | None = None
) -> dict[str, Any]:
    env = node_env(server, extra_env)
    result = subprocess.run(
        [node, str(SCRIPTS / script)],
        cwd=REPO_ROOT,  # node_modules lives at the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    report = (
        f"node {script} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    assert result.returncode == 0, report
    assert lines, report
    summary = json.loads(lines[-1])
    assert isinstance(summary, dict), report
    return summary


def test_amplify_events_client(node_executable: str, daphne_tls_server: DaphneServer) -> None:
    summary = run_node(node_executable, "events.mjs", daphne_tls_server)

    room = [*WS_SINGLE, *WS_BATCH, *HTTP_SINGLE, *HTTP_BATCH, AFTER_REFUSALS]
    wild = [*WS_SINGLE, *WS_BATCH, *HTTP_SINGLE, *HTTP_BATCH, DEEP_EVENT, AFTER_REFUSALS]
    assert summary == {
        "ready": {"room": {"ok": True, "value": True}, "wild": {"ok": True, "value": True}},
        # channel.publish resolves (to undefined) on publish_success.
        "wsPublish": [OK] * (len(WS_SINGLE) + 1),
        # events.post returns nothing when no event failed.
        "post": [OK] * (len(HTTP_SINGLE) + 2),
        "allArrived": {"ok": True, "value": True},
        "received": {"room": room, "wild": wild},
        "subscriptionErrors": {"room": [], "wild": []},
        "wrongKey": {
            # subscribe_error fails that subscription only (Amplify 6.22.1, PROTOCOL §10).
            "subscribeReady": {
                "ok": False,
                "error": {
                    "name": "GraphQLError",
                    "message": f"Connection failed: UnauthorizedException: {UNAUTHORIZED_MESSAGE}",
                },
            },
            "subscribeErrorCallback": [
                {"errors": [f"Connection failed: UnauthorizedException: {UNAUTHORIZED_MESSAGE}"]}
            ],
            # publish_error with the publish's id rejects that publish.
            "wsPublish": {
                "ok": False,
                "error": {"name": "Error", "message": "Publish errors: UnauthorizedException"},
            },
            "post": POST_UNAUTHORIZED,
            "thenValidPublish": OK,
        },
        "allArrivedAfterRefusals": {"ok": True, "value": True},
        "closeAll": OK,
    }


def test_amplify_wrong_key_connect_is_refused_at_once(
    node_executable: str, daphne_tls_server: DaphneServer
) -> None:
    summary = run_node(node_executable, "wrong_key_connect.mjs", daphne_tls_server)
    assert summary == {
        # connection_error with UnauthorizedException/401 is non-retryable for Amplify.
        "connect": {"ok": False, "error": {"name": "Error", "message": "UnauthorizedException"}},
        "refusedQuickly": True,
        "post": POST_UNAUTHORIZED,
    }


def test_amplify_gets_what_it_missed_after_its_own_reconnect(
    node_executable: str,
    redis_server: RedisServer,
    tls_files: tuple[Path, Path, Path],
    e2e_workdir: Path,
    e2e_env: dict[str, str],
    e2e_api_key: str,
) -> None:
    """Transparent recovery (PROTOCOL §12, "History") across two processes and Redis."""
    enable_history(e2e_env, "chat", 500)

    def start(name: str) -> DaphneServer:
        return _start_daphne(
            workdir=e2e_workdir,
            name=name,
            env={**e2e_env, "REDIS_URL": redis_server.url},
            tls=tls_files,
            api_key=lambda: e2e_api_key,
        )

    subscriber = start("history-subscriber")
    try:
        publisher = start("history-publisher")
        try:
            summary = run_node(
                node_executable, "history_resume.mjs", subscriber, {"RT_PUBLISH_URL": publisher.event_url}
            )
            publisher.assert_no_traceback()
        finally:
            publisher.stop()
        subscriber.assert_no_traceback()
    finally:
        subscriber.stop()

    missed = [{"missed": i} for i in range(10)]
    assert summary == {
        "ready": {"ok": True, "value": True},
        "received": [{"before": 1}, {"before": 2}, *missed, {"live": 1}],
        "errors": [],
        "sockets": 2,
        # The wire carries offsets and the recovery flag; Amplify ignored both.
        "frames": [
            {"type": "subscribe_success", "offset": 12, "recovered": True},
            *[{"type": "data", "offset": offset} for offset in range(3, 13)],
            {"type": "data", "offset": 13},
        ],
        "closeAll": OK,
    }
