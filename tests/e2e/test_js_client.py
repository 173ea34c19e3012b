"""The shipped browser client, ``realtime/static/realtime/realtime.js``, run under Node.

``js/client_test.mjs`` drives it (with ``ws`` as WebSocket, and Node's fetch) against a real
daphne, plain and TLS: subscribe to a concrete channel and a wildcard, publish over WebSocket
and HTTP, survive network drops (reconnect with backoff, re-subscribe with the same ids), detect
a silent link with the keep-alive watchdog, and stop at once on a wrong key. It prints one JSON
summary; this test asserts all of it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO_ROOT, DaphneFactory, DaphneServer, RedisServer, enable_history

pytestmark = [pytest.mark.e2e, pytest.mark.node]

SCRIPT = Path(__file__).parent / "js" / "client_test.mjs"
NODE_TIMEOUT = 90

# Published by the script, each batch 1-5 JSON values of every kind (PROTOCOL §2.1).
EVENTS: dict[str, list[Any]] = {
    "ws": [
        {"text": "hello", "n": 1, "nested": {"list": [1, 2, 3], "ok": True}},
        "héllo ✓ 👋",
        42,
    ],
    "http": [None, [True, False, 1.5], {"quote": '"</script>\\', "empty": {}}],
    "deep": [{"deep": True}],
    "reconnect": [{"after": "reconnect"}, "second"],
    "backoff": [{"after": "backoff"}],
    "unsubscribe": [{"after": "unsubscribe"}],
    "watchdog": [{"after": "watchdog"}],
}


def _canonical(events: list[Any]) -> list[Any]:
    """Delivery order across a batch is not guaranteed (PROTOCOL §3.5): compare as multisets."""
    return sorted(events, key=lambda event: json.dumps(event, sort_keys=True))


# (phase, key) of every list of received events in the summary.
RECEIVED = [
    ("pubsub", "concrete"),
    ("pubsub", "wildcard"),
    ("reconnect", "concrete"),
    ("reconnect", "wildcard"),
    ("backoff", "concrete"),
    ("backoff", "wildcard"),
    ("unsubscribe", "concrete"),
    ("unsubscribe", "wildcard"),
    ("watchdog", "received"),
]


def _publish_facts(count: int) -> dict[str, Any]:
    return {
        "successful_indexes": list(range(count)),
        "identifiers_are_uuids": True,
        "failed": [],
        "expected_count": True,
    }


def _error(error_type: str, message: str | None = None, **extra: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {"errorType": error_type, **extra}
    if message is not None:
        entry["message"] = message
    return {"errorType": error_type, "errors": [entry]}


UNAUTHORIZED = "You are not authorized to make this call."


def _expected(server: DaphneServer) -> dict[str, Any]:
    ws, http = EVENTS["ws"], EVENTS["http"]
    return {
        "handshake": {
            "url": server.ws_url,
            "protocols": ["aws-appsync-event-ws", "header-…"],
            "unpadded": True,
            "authorization": {"host": server.authority, "x-api-key": server.api_key},
            "selected": "aws-appsync-event-ws",
            "first_frame": {"type": "connection_init"},
            "states": ["connecting", "connected"],
        },
        "pubsub": {
            "ws_publish": _publish_facts(len(ws)),
            "http_publish": _publish_facts(len(http)),
            "deep_publish": _publish_facts(len(EVENTS["deep"])),
            # Each event exactly once per matching subscription; the wildcard sees every depth.
            "concrete": ws + http,
            "wildcard": ws + http + EVENTS["deep"],
            "denied_subscription": _error("UnauthorizedException"),
            "subscriber_errors": ["UnauthorizedException"],
            "subscriber_states": ["connecting", "connected"],
        },
        "reconnect": {
            "states": ["reconnecting", "connected"],
            "attempt": 1,
            "delay_within_base": True,
            "first_at_once": True,
            "reason": "ConnectionClosed",
            "resent_types": ["connection_init", "subscribe", "subscribe"],
            "same_ids": True,
            "active": [True, True],
            "concrete": EVENTS["reconnect"],
            "wildcard": EVENTS["reconnect"],
        },
        "backoff": {
            # The drop comes soon after the last reconnect: the attempt count goes on.
            "attempts": [2, 3],
            "delays_within_caps": True,
            "delays_within_phone_caps": True,
            "refused": True,
            "concrete": EVENTS["backoff"],
            "wildcard": EVENTS["backoff"],
        },
        "unsubscribe": {"sent": True, "concrete": [], "wildcard": EVENTS["unsubscribe"]},
        "close": {"state": "closed", "last_state": "closed"},
        "watchdog": {
            "states": ["reconnecting", "connected"],
            "reason": "KeepAliveTimeout",
            "sockets": 2,
            "received": EVENTS["watchdog"],
        },
        "publish_errors": {
            "unknown_namespace": _error("UnauthorizedException"),
            "six_events": _error("InvalidInputError", "input exceeded 5 event limit"),
            "wildcard_channel": _error("BadRequestException", "Invalid Channel Format"),
            "still_connected": "connected",
            "then_publishes": 1,
        },
        "unauthorized": {
            "connect_error": _error("UnauthorizedException", UNAUTHORIZED, errorCode=401),
            # Surfaced once, and never retried: one socket in all.
            "states": ["connecting", "closed"],
            "on_error": ["UnauthorizedException"],
            "sockets": 1,
            "state": "closed",
            "http_publish": {**_error("UnauthorizedException", UNAUTHORIZED), "status": 401},
        },
        "short_cap": {"attempts": True, "delays_within_cap": True, "first_at_once": True},
    }


def _run_client(node: str, server: DaphneServer) -> dict[str, Any]:
    config = {
        "httpEndpoint": server.event_url,
        "apiKey": server.api_key,
        "prefix": f"default/js-{uuid.uuid4().hex[:12]}",
        "events": EVENTS,
    }
    env = dict(os.environ)
    if server.ca_file is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(server.ca_file)
    result = subprocess.run(
        [node, str(SCRIPT), json.dumps(config)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0 and lines, (
        f"node exited with {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    summary = json.loads(lines[-1])
    for phase, key in RECEIVED:
        summary[phase][key] = _canonical(summary[phase][key])
    return summary


@pytest.mark.timeout(NODE_TIMEOUT + 30)
@pytest.mark.parametrize(
    "server_fixture",
    ["daphne_server", "daphne_tls_server", "daphne-asgi-send", "uvicorn", "uvicorn-asgi-send"],
)
def test_js_client_against_daphne(
    request: pytest.FixtureRequest, node_executable: str, server_fixture: str
) -> None:
    """The browser client's conversation, on daphne (plain, TLS) and uvicorn, frames written straight
    to the transport or through ASGI ``send`` (``*-asgi-send``)."""
    if server_fixture.endswith("_server"):
        server: DaphneServer = request.getfixturevalue(server_fixture)
    else:
        server = request.getfixturevalue("start_variant")(server_fixture)

    summary = _run_client(node_executable, server)

    expected = _expected(server)
    for phase, key in RECEIVED:
        expected[phase][key] = _canonical(expected[phase][key])
    assert summary == expected
    server.assert_alive()
    server.assert_no_traceback()


HISTORY_SCRIPT = Path(__file__).parent / "js" / "history_test.mjs"


def test_realtime_js_recovers_missed_events_with_since(
    node_executable: str,
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    e2e_api_key: str,
) -> None:
    """PROTOCOL §12: a replay within the bound; beyond it, and after a flush, recovered false."""
    enable_history(e2e_env, "chat", 500)
    (server,) = daphne_factory(
        "history-js", REDIS_URL=redis_server.url, DJANGO_SETTINGS_MODULE="tests.e2e.settings_history"
    )
    config = {"httpEndpoint": server.event_url, "apiKey": server.api_key, "channel": "/chat/js-room"}
    summary: dict[str, Any] = {}
    with subprocess.Popen(
        [node_executable, str(HISTORY_SCRIPT), json.dumps(config)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"},
    ) as process:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        for line in process.stdout:
            message = json.loads(line)
            if message.get("request") == "flush":
                # Redis loses everything, as after a restart without persistence.
                with socket.create_connection(("127.0.0.1", redis_server.port), timeout=2) as conn:
                    conn.sendall(b"FLUSHALL\r\n")
                    assert conn.recv(64).startswith(b"+OK")
                process.stdin.write("flushed\n")
                process.stdin.flush()
            else:
                summary = message
        stderr = process.stderr.read()
        process.wait(timeout=NODE_TIMEOUT)
    assert process.returncode == 0, f"{summary}\n{stderr}"

    assert summary == {
        "start": {"offset": 0, "epochIsHex": True},
        "beforeOutage": {"received": [0, 1, 2], "position": {"offset": 3, "epoch": True}},
        "recover": {"recovered": True, "received": list(range(24)), "offset": 24},
        "limit": {"recovered": False, "replayed": 0, "offset": 174, "sameEpoch": True},
        "flush": {"recovered": False, "replayed": 0, "offset": 2, "epochChanged": True},
        "afterFlush": {"last": 176, "offset": 3},
        "recoveries": [True, False, False],
    }
