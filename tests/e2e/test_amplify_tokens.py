"""The official Amplify JS ``events`` client (aws-amplify 6.22.1, unmodified) with token auth modes.

A TLS daphne runs ``tests.e2e.settings_tokens``: connect, publish and subscribe accept ``OIDC``
then ``CUSTOM``, and no API key. ``amplify/token_modes.mjs`` drives Amplify in one mode per run:

- ``lambda``: ``authMode: 'lambda'`` with ``authToken``, the client side of an AppSync Lambda
  authorizer; the server's CUSTOM mode hands the token to :mod:`tests.e2e.token_authorizer`.
- ``oidc``: ``authMode: 'oidc'``, the token from a custom Amplify token provider
  (``Amplify.configure(config, {Auth: {tokenProvider}})``, no Cognito): an RS256 JWT this module
  signs, verified by the server's OIDC mode against a JWKS served on a local HTTP port.

Each run prints one JSON summary line, asserted here in full, as is the authorizer's log.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from . import token_authorizer
from .conftest import REPO_ROOT, DaphneServer, _checked
from .test_amplify import NODE_TIMEOUT, OK, POST_UNAUTHORIZED, SCRIPTS, UNAUTHORIZED_MESSAGE

pytestmark = [pytest.mark.e2e, pytest.mark.node]

SETTINGS_MODULE = "tests.e2e.settings_tokens"
JWKS_PATH = "/.well-known/jwks.json"
AUDIENCE = "amplify-e2e"
KEY_ID = "e2e-oidc-key"
OIDC_SUBJECT = "amplify-oidc-user"

# What token_modes.mjs publishes, as each subscription must receive it: in order, each once.
WS_BATCH = [{"batch": "ws"}, "two", 3]
HTTP_SINGLE = [{"via": "http", "list": [1, 2]}, "http string", -1, ["a", "b"]]
HTTP_BATCH = [{"batch": "http"}, 0, "last"]
DEEP_EVENT = {"deep": True}
AFTER_REFUSALS = {"still": "open"}


def ws_single(mode: str) -> list[Any]:
    return [
        {"mode": mode, "n": 1, "nested": {"ok": True, "none": None}},
        "Token ¿qué tal? ✓",
        7.25,
        [1, "two", {"three": 3}, [4]],
        False,
        None,
    ]


def expected_summary(mode: str) -> dict[str, Any]:
    single = ws_single(mode)
    room = [*single, *WS_BATCH, *HTTP_SINGLE, *HTTP_BATCH, AFTER_REFUSALS]
    wild = [*single, *WS_BATCH, *HTTP_SINGLE, *HTTP_BATCH, DEEP_EVENT, AFTER_REFUSALS]
    refused = f"Connection failed: UnauthorizedException: {UNAUTHORIZED_MESSAGE}"
    return {
        "mode": mode,
        # connection_error (UnauthorizedException, 401) is non-retryable for Amplify.
        "badConnect": {
            "connect": {"ok": False, "error": {"name": "Error", "message": "UnauthorizedException"}},
            "refusedQuickly": True,
        },
        "ready": {"room": {"ok": True, "value": True}, "wild": {"ok": True, "value": True}},
        "wsPublish": [OK] * (len(single) + 1),
        "post": [OK] * (len(HTTP_SINGLE) + 2),
        "allArrived": {"ok": True, "value": True},
        "received": {"room": room, "wild": wild},
        "subscriptionErrors": {"room": [], "wild": []},
        "badToken": {
            "subscribeReady": {"ok": False, "error": {"name": "GraphQLError", "message": refused}},
            "subscribeErrorCallback": [{"errors": [refused]}],
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


# -- a local OpenID Connect issuer: an RSA key and its JWKS over HTTP -----------------------------


class OidcIssuer:
    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": KEY_ID, "alg": "RS256", "use": "sig"})
        self.jwks = json.dumps({"keys": [jwk]}).encode()
        self.requests = 0
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                issuer.requests += 1
                if self.path != JWKS_PATH:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(issuer.jwks)))
                self.end_headers()
                self.wfile.write(issuer.jwks)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="e2e-jwks", daemon=True)

    def token(self, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        """An access token for :data:`AUDIENCE`, valid for ten minutes, signed with ``key``."""
        now = int(time.time())
        payload = {
            "iss": self.url,
            "sub": OIDC_SUBJECT,
            "aud": AUDIENCE,
            "token_use": "access",
            "iat": now,
            "exp": now + 600,
            **claims,
        }
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": KEY_ID})


@pytest.fixture(scope="module")
def oidc_issuer() -> Iterator[OidcIssuer]:
    issuer = OidcIssuer()
    issuer.thread.start()
    try:
        yield issuer
    finally:
        issuer.server.shutdown()
        issuer.server.server_close()
        issuer.thread.join(timeout=5)


@pytest.fixture
def token_server(start_tls_daphne: Any, oidc_issuer: OidcIssuer) -> Iterator[DaphneServer]:
    server = start_tls_daphne(
        SETTINGS_MODULE,
        env={
            "RT_E2E_OIDC_ISSUER": oidc_issuer.url,
            "RT_E2E_OIDC_AUDIENCE": AUDIENCE,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        },
    )
    yield from _checked(server)


def run_token_modes(node: str, server: DaphneServer, mode: str, good: str, bad: str) -> dict[str, Any]:
    assert server.ca_file is not None, "Amplify needs the TLS server"
    env = {
        **os.environ,
        "RT_EVENT_URL": server.event_url,
        # common.mjs insists on a key; token_modes.mjs never sends it.
        "RT_API_KEY": server.api_key,
        "RT_GOOD_TOKEN": good,
        "RT_BAD_TOKEN": bad,
        "NODE_EXTRA_CA_CERTS": str(server.ca_file),
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }
    result = subprocess.run(
        [node, str(SCRIPTS / "token_modes.mjs"), mode],
        cwd=REPO_ROOT,  # node_modules lives at the repository root
        env=env,
        capture_output=True,
        text=True,
        timeout=NODE_TIMEOUT,
        check=False,
    )
    report = (
        f"node token_modes.mjs {mode} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
    )
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, report
    assert lines, report
    summary = json.loads(lines[-1])
    assert isinstance(summary, dict), report
    return summary


def authorizer_decisions(server: DaphneServer, since: int) -> set[str]:
    """``"OPERATION channel verdict"`` for each call of the CUSTOM authorizer logged since ``since``."""
    marker = token_authorizer.LOG_MARKER + " "
    return {
        line.split(marker, 1)[1].strip() for line in server.log_text(since).splitlines() if marker in line
    }


def test_amplify_lambda_mode_uses_the_custom_authorizer(
    node_executable: str, token_server: DaphneServer
) -> None:
    start = token_server.log_size()
    summary = run_token_modes(
        node_executable, token_server, "lambda", token_authorizer.GOOD_TOKEN, "bad-token"
    )
    assert summary == expected_summary("lambda")

    # Every operation was decided by the CUSTOM callable, on the token Amplify sent as is.
    room = "/default/lambda/room"
    assert authorizer_decisions(token_server, start) == {
        "CONNECT - denied",
        "CONNECT - allowed",
        f"SUBSCRIBE {room} allowed",
        "SUBSCRIBE /default/* allowed",
        f"PUBLISH {room} allowed",
        f"PUBLISH {room}/deeper allowed",
        f"SUBSCRIBE {room} denied",
        f"PUBLISH {room} denied",
    }


def test_amplify_oidc_mode_with_a_custom_token_provider(
    node_executable: str, token_server: DaphneServer, oidc_issuer: OidcIssuer
) -> None:
    start = token_server.log_size()
    # Same issuer, claims and kid, but signed by another key: only the signature is wrong.
    forged = oidc_issuer.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048))
    summary = run_token_modes(node_executable, token_server, "oidc", oidc_issuer.token(), forged)
    assert summary == expected_summary("oidc")

    # The JWTs were OIDC's alone (verified, or refused): none reached the CUSTOM callable.
    assert authorizer_decisions(token_server, start) == set()
    assert oidc_issuer.requests >= 1, "the server never fetched the JWKS"
