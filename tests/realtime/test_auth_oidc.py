"""The OIDC auth mode: JWTs verified against a JWKS served by a local HTTP server (PROTOCOL §5)."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
from channels.testing import WebsocketCommunicator
from cryptography.hazmat.primitives.asymmetric import rsa
from django.test import AsyncClient
from jwt.algorithms import RSAAlgorithm

from realtime.auth import AuthRequest, Identity, Operation, RequestInfo, get_authorizer, oidc
from realtime.auth.oidc import OidcAuthorizer
from realtime.exceptions import Transport, Unauthorized

from . import custom_authorizers
from .conftest import (
    CONNECTION_ACK,
    CONNECTION_ERROR,
    HOST,
    KA,
    SUBPROTOCOL,
    UNAUTHORIZED,
    assert_closed,
    assert_published,
    assert_sent,
    assert_silent,
    connection_init,
    data,
    header_subprotocol,
    publish,
    subscribe,
    subscribed,
)

CLIENT_ID = "client-a"
SOURCE_IP = "203.0.113.7"
JWKS_PATH = "/pool/.well-known/jwks.json"
OTHER_JWKS_PATH = "/keys"


# -- keys, a JWKS server, tokens ------------------------------------------------------


@functools.cache
def rsa_key(name: str) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(name: str, kid: str | None) -> dict[str, Any]:
    jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(rsa_key(name).public_key()))
    jwk.update({"alg": "RS256", "use": "sig"})
    if kid is not None:
        jwk["kid"] = kid
    return jwk


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts the requests it answers."""

    def __init__(self) -> None:
        self.keys = [public_jwk("k1", "k1")]
        self.status = 200
        self.requests = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path not in (JWKS_PATH, OTHER_JWKS_PATH):
                    self.send_error(404)
                    return
                server.requests += 1
                if server.status != 200:
                    self.send_error(server.status)
                    return
                body = json.dumps({"keys": server.keys}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.issuer = self.base_url + "/pool"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05})
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _fresh_calls() -> None:
    # The JWKS and result caches are reset with the authorizers (tests/conftest.py).
    custom_authorizers.calls.clear()


@pytest.fixture
def configure(settings: Any, jwks_server: JwksServer) -> Callable[..., None]:
    """Set ``REALTIME``: OIDC for every operation, against the local issuer; overrides merge in."""

    def configure_(modes: list[str] | None = None, custom_handler: str | None = None, **oidc_: Any) -> None:
        modes = modes or ["OIDC"]
        settings.REALTIME = {
            "CONNECTION_AUTH_MODES": modes,
            "DEFAULT_PUBLISH_AUTH_MODES": modes,
            "DEFAULT_SUBSCRIBE_AUTH_MODES": modes,
            "OIDC": {"ISSUER": jwks_server.issuer, "AUDIENCES": [CLIENT_ID], **oidc_},
            "CUSTOM_AUTHORIZER": {"HANDLER": custom_handler},
        }

    configure_()
    return configure_


class Clock:
    """Stands in for ``time`` in :mod:`realtime.auth.oidc` (the JWKS cache's clock)."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(oidc, "time", SimpleNamespace(monotonic=fake.monotonic))
    return fake


DROP = object()


@dataclass(frozen=True)
class FromNow:
    """A time claim relative to when the token is made, not when the tests were collected."""

    seconds: int


def make_token(
    *, key: str = "k1", kid: str | None = "k1", alg: str = "RS256", issuer: str, **claims: Any
) -> str:
    """A Cognito-style ID token (override any claim; ``DROP`` removes one)."""
    now = int(time.time())
    payload: dict[str, Any] = {
        "sub": "user-1",
        "iss": issuer,
        "aud": CLIENT_ID,
        "token_use": "id",
        "cognito:username": "alice",
        "cognito:groups": ["admins"],
        "email": "alice@example.com",
        "iat": now,
        "exp": now + 300,
    }
    payload.update(claims)
    payload = {
        name: now + value.seconds if isinstance(value, FromNow) else value
        for name, value in payload.items()
        if value is not DROP
    }
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, rsa_key(key), algorithm=alg, headers=headers)


def access_token(*, issuer: str, **claims: Any) -> str:
    """A Cognito access token: ``client_id`` and ``username``, no ``aud``."""
    defaults: dict[str, Any] = {
        "aud": DROP,
        "client_id": CLIENT_ID,
        "token_use": "access",
        "cognito:username": DROP,
        "username": "alice",
        "scope": "aws.cognito.signin.user.admin",
    }
    return make_token(issuer=issuer, **{**defaults, **claims})


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}.{b64url(signature)}"


def auth_request(operation: Operation = Operation.CONNECT) -> AuthRequest:
    return AuthRequest(
        operation=operation, request=RequestInfo(transport=Transport.WEBSOCKET, source_ip=SOURCE_IP)
    )


def oidc_authorizer() -> OidcAuthorizer:
    """This process's OIDC authorizer: the one the WebSocket and HTTP paths use."""
    authorizer = get_authorizer("OIDC")
    assert isinstance(authorizer, OidcAuthorizer)
    return authorizer


async def authenticate(token: str | None, **credentials: str) -> Identity | None:
    if token is not None:
        credentials["authorization"] = token
    return await oidc_authorizer().authenticate(credentials, auth_request())


async def assert_refused(token: str) -> None:
    with pytest.raises(Unauthorized):
        await authenticate(token)


# -- what is verified ------------------------------------------------------------------


async def test_a_valid_id_token_gives_handlers_a_cognito_shaped_identity(jwks_server, configure) -> None:
    token = make_token(issuer=jwks_server.issuer)

    identity = await authenticate(token)

    assert identity is not None
    claims = jwt.decode(token, options={"verify_signature": False})
    assert identity == Identity(
        mode="OIDC",
        context={
            "sub": "user-1",
            "issuer": jwks_server.issuer,
            "username": "alice",
            "groups": ["admins"],
            "claims": claims,
            "sourceIp": [SOURCE_IP],
            "defaultAuthStrategy": "ALLOW",
        },
        user_id="user-1",
        # An open connection closes when the token expires (PROTOCOL §12).
        expires_at=float(claims["exp"]),
    )


async def test_a_valid_access_token_is_checked_by_its_client_id(jwks_server, configure) -> None:
    identity = await authenticate(access_token(issuer=jwks_server.issuer))

    assert identity is not None
    assert identity.context is not None
    assert identity.context["username"] == "alice"
    assert identity.context["claims"]["client_id"] == CLIENT_ID
    assert "aud" not in identity.context["claims"]


async def test_username_falls_back_to_sub_and_groups_to_an_empty_list(jwks_server, configure) -> None:
    token = make_token(issuer=jwks_server.issuer, **{"cognito:username": DROP, "cognito:groups": DROP})

    identity = await authenticate(token)

    assert identity is not None and identity.context is not None
    assert (identity.context["username"], identity.context["groups"]) == ("user-1", [])


@pytest.mark.parametrize("prefix", ["Bearer ", "bearer ", "BEARER  "])
async def test_a_bearer_prefix_is_allowed(jwks_server, configure, prefix) -> None:
    assert await authenticate(prefix + make_token(issuer=jwks_server.issuer)) is not None


@pytest.mark.parametrize(
    "token",
    [
        None,
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/appsync/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=abcdef",
        "an-opaque-token",
        "allow:alice",
        "three.dotted.parts",
        "e30.e30.sig",  # JSON header, but no alg: not a JWT
        "",
    ],
)
async def test_credentials_that_are_not_a_jwt_are_left_to_other_modes(jwks_server, configure, token) -> None:
    assert await authenticate(token, **{"x-api-key": "da2-something"}) is None
    assert jwks_server.requests == 0


@pytest.mark.parametrize(
    "claims",
    [
        pytest.param({"exp": FromNow(-120)}, id="expired beyond leeway"),
        pytest.param({"exp": DROP}, id="no exp"),
        pytest.param({"nbf": FromNow(120)}, id="nbf in the future beyond leeway"),
        pytest.param({"iat": FromNow(120)}, id="issued in the future beyond leeway"),
        pytest.param({"iss": "https://cognito-idp.us-east-1.amazonaws.com/other"}, id="wrong issuer"),
        pytest.param({"iss": DROP}, id="no issuer"),
        pytest.param({"aud": "client-b"}, id="wrong audience"),
        pytest.param({"aud": DROP}, id="no audience"),
        pytest.param({"token_use": "refresh"}, id="token_use not allowed"),
        pytest.param({"sub": 42}, id="sub not a string"),
    ],
)
async def test_invalid_claims_are_refused(jwks_server, configure, caplog, claims) -> None:
    token = make_token(issuer=jwks_server.issuer, **claims)

    with caplog.at_level(logging.DEBUG, logger="realtime"):
        await assert_refused(token)

    assert "OIDC: token refused" in caplog.text
    assert token not in caplog.text


async def test_clock_skew_within_leeway_is_tolerated(jwks_server, configure) -> None:
    now = int(time.time())
    token = make_token(issuer=jwks_server.issuer, exp=now - 30, nbf=now + 30, iat=now + 30)

    assert await authenticate(token) is not None

    configure(LEEWAY=0)
    await assert_refused(token)


async def test_an_access_token_of_another_client_is_refused(jwks_server, configure) -> None:
    await assert_refused(access_token(issuer=jwks_server.issuer, client_id="client-b"))


async def test_an_audience_list_is_accepted_when_one_entry_is_allowed(jwks_server, configure) -> None:
    assert await authenticate(make_token(issuer=jwks_server.issuer, aud=["other", CLIENT_ID])) is not None


async def test_without_audiences_any_client_is_accepted(jwks_server, configure) -> None:
    configure(AUDIENCES=[])

    assert await authenticate(make_token(issuer=jwks_server.issuer, aud="anyone")) is not None
    assert await authenticate(access_token(issuer=jwks_server.issuer, client_id="anyone")) is not None


async def test_client_id_regex_must_match_the_whole_client_id(jwks_server, configure) -> None:
    configure(AUDIENCES=[], CLIENT_ID_REGEX=r"client-[a-c]")

    assert await authenticate(access_token(issuer=jwks_server.issuer, client_id="client-b")) is not None
    await assert_refused(access_token(issuer=jwks_server.issuer, client_id="client-d"))
    await assert_refused(access_token(issuer=jwks_server.issuer, client_id="client-bb"))


async def test_token_use_is_limited_to_token_use_setting(jwks_server, configure) -> None:
    configure(TOKEN_USE=["id"])

    assert await authenticate(make_token(issuer=jwks_server.issuer)) is not None
    await assert_refused(access_token(issuer=jwks_server.issuer))


async def test_a_token_without_token_use_is_accepted(jwks_server, configure) -> None:
    assert await authenticate(make_token(issuer=jwks_server.issuer, token_use=DROP)) is not None


async def test_a_signature_by_another_key_is_refused(jwks_server, configure, caplog) -> None:
    token = make_token(issuer=jwks_server.issuer, key="intruder", kid="k1")

    with caplog.at_level(logging.INFO, logger="realtime"):
        await assert_refused(token)

    assert "Signature verification failed" in caplog.text


async def test_a_tampered_payload_is_refused(jwks_server, configure) -> None:
    header, _, signature = make_token(issuer=jwks_server.issuer).split(".")
    forged = jwt.decode(make_token(issuer=jwks_server.issuer), options={"verify_signature": False})
    forged["cognito:groups"] = ["root"]

    await assert_refused(f"{header}.{b64url(json.dumps(forged).encode())}.{signature}")


async def test_alg_none_is_refused_even_when_allowed_in_settings(jwks_server, configure) -> None:
    configure(ALGORITHMS=["RS256", "none"])
    claims = jwt.decode(make_token(issuer=jwks_server.issuer), options={"verify_signature": False})

    await assert_refused(unsigned_token({"alg": "none", "typ": "JWT", "kid": "k1"}, claims))
    await assert_refused(jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"}))


async def test_hs256_signed_with_the_public_key_is_refused(jwks_server, configure) -> None:
    # The classic algorithm-confusion attack: HMAC keyed with the published RSA key.
    claims = jwt.decode(make_token(issuer=jwks_server.issuer), options={"verify_signature": False})
    header = {"alg": "HS256", "typ": "JWT", "kid": "k1"}
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    secret = json.dumps(jwks_server.keys[0]).encode()
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()

    await assert_refused(f"{signing_input}.{b64url(signature)}")
    configure(ALGORITHMS=["RS256", "HS256"])
    await assert_refused(f"{signing_input}.{b64url(signature)}")
    # Even when the JWK does not declare its algorithm, an RSA key is no HMAC secret.
    jwks_server.keys = [{name: value for name, value in public_jwk("k1", "k1").items() if name != "alg"}]
    oidc_authorizer().jwks_cache.clear()
    await assert_refused(f"{signing_input}.{b64url(signature)}")
    assert jwks_server.requests == 2


async def test_an_algorithm_outside_algorithms_is_refused(jwks_server, configure) -> None:
    jwks_server.keys = [{**public_jwk("k1", "k1"), "alg": "RS384"}]
    token = make_token(issuer=jwks_server.issuer, alg="RS384")

    await assert_refused(token)
    configure(ALGORITHMS=["RS384"])
    assert await authenticate(token) is not None


async def test_a_key_declared_for_another_algorithm_is_not_used(jwks_server, configure) -> None:
    configure(ALGORITHMS=["RS256", "RS512"])

    await assert_refused(make_token(issuer=jwks_server.issuer, alg="RS512"))


async def test_a_token_without_kid_uses_the_jwks_key_without_kid(jwks_server, configure) -> None:
    await assert_refused(make_token(issuer=jwks_server.issuer, kid=None))

    oidc_authorizer().jwks_cache.clear()
    jwks_server.keys = [public_jwk("k1", None)]
    assert await authenticate(make_token(issuer=jwks_server.issuer, kid=None)) is not None


async def test_encryption_keys_in_the_jwks_are_ignored(jwks_server, configure) -> None:
    jwks_server.keys = [{**public_jwk("k1", "k1"), "use": "enc"}]

    await assert_refused(make_token(issuer=jwks_server.issuer))


async def test_without_an_issuer_every_token_is_refused_and_logged(jwks_server, configure, caplog) -> None:
    configure(ISSUER=None)

    with caplog.at_level(logging.ERROR, logger="realtime"):
        await assert_refused(make_token(issuer=jwks_server.issuer))

    assert "['ISSUER'] is not set" in caplog.text
    assert jwks_server.requests == 0


# -- the JWKS: where, caching, rotation, outages ----------------------------------------


async def test_the_jwks_url_defaults_to_the_issuers_well_known_path(jwks_server, configure) -> None:
    await authenticate(make_token(issuer=jwks_server.issuer))

    assert jwks_server.requests == 1
    configure(JWKS_URL=jwks_server.base_url + OTHER_JWKS_PATH)
    await authenticate(make_token(issuer=jwks_server.issuer))
    assert jwks_server.requests == 2


async def test_the_jwks_is_fetched_once_and_cached_for_its_ttl(jwks_server, configure, clock) -> None:
    for _ in range(3):
        assert await authenticate(make_token(issuer=jwks_server.issuer)) is not None
    assert jwks_server.requests == 1

    clock.advance(299)
    await authenticate(make_token(issuer=jwks_server.issuer))
    assert jwks_server.requests == 1

    clock.advance(2)
    await authenticate(make_token(issuer=jwks_server.issuer))
    assert jwks_server.requests == 2


async def test_concurrent_requests_share_one_fetch(jwks_server, configure) -> None:
    results = await asyncio.gather(*(authenticate(make_token(issuer=jwks_server.issuer)) for _ in range(10)))

    assert all(identity is not None for identity in results)
    assert jwks_server.requests == 1


async def test_an_unknown_kid_after_rotation_triggers_one_rate_limited_refetch(
    jwks_server, configure, clock, caplog
) -> None:
    assert await authenticate(make_token(issuer=jwks_server.issuer)) is not None
    jwks_server.keys = [public_jwk("k2", "k2")]
    rotated = make_token(issuer=jwks_server.issuer, key="k2", kid="k2")

    # Right after a fetch, an unknown kid does not make the server fetch again.
    clock.advance(1)
    await assert_refused(rotated)
    assert jwks_server.requests == 1

    clock.advance(oidc.MIN_REFETCH_INTERVAL)
    with caplog.at_level(logging.INFO, logger="realtime"):
        assert await authenticate(rotated) is not None
    assert jwks_server.requests == 2
    assert "unknown key id 'k2'" in caplog.text

    # The new key is cached; made-up kids cannot make it fetch again at once.
    assert await authenticate(rotated) is not None
    await assert_refused(make_token(issuer=jwks_server.issuer, key="k2", kid="made-up"))
    assert jwks_server.requests == 2
    # The retired key is gone with the old document.
    await assert_refused(make_token(issuer=jwks_server.issuer))
    assert jwks_server.requests == 2


async def test_an_unreachable_jwks_refuses_the_request_with_a_warning(configure, caplog) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    configure(ISSUER="https://issuer.example.test", JWKS_URL=f"http://127.0.0.1:{closed_port}/jwks.json")

    with caplog.at_level(logging.WARNING, logger="realtime"):
        await assert_refused(make_token(issuer="https://issuer.example.test"))

    [record] = [r for r in caplog.records if r.name == "realtime.auth.oidc"]
    assert record.levelno == logging.WARNING
    assert "cannot fetch the JWKS" in record.getMessage()


async def test_a_failing_jwks_is_retried_at_most_every_refetch_interval(
    jwks_server, configure, clock
) -> None:
    jwks_server.status = 500
    token = make_token(issuer=jwks_server.issuer)

    await assert_refused(token)
    await assert_refused(token)
    assert jwks_server.requests == 1

    jwks_server.status = 200
    clock.advance(oidc.MIN_REFETCH_INTERVAL)
    assert await authenticate(token) is not None
    assert jwks_server.requests == 2


async def test_known_keys_stay_in_use_while_the_jwks_is_down(jwks_server, configure, clock, caplog) -> None:
    token = make_token(issuer=jwks_server.issuer)
    assert await authenticate(token) is not None
    jwks_server.status = 503

    clock.advance(301)
    with caplog.at_level(logging.WARNING, logger="realtime"):
        assert await authenticate(token) is not None
    assert jwks_server.requests == 2
    assert "cannot fetch the JWKS" in caplog.text
    assert await authenticate(token) is not None
    assert jwks_server.requests == 2


async def test_a_jwks_that_is_not_a_jwks_refuses_tokens(jwks_server, configure) -> None:
    jwks_server.keys = "nope"  # type: ignore[assignment]

    await assert_refused(make_token(issuer=jwks_server.issuer))


async def test_changing_settings_drops_the_cached_keys(jwks_server, configure) -> None:
    await authenticate(make_token(issuer=jwks_server.issuer))
    configure(LEEWAY=30)
    await authenticate(make_token(issuer=jwks_server.issuer))

    assert jwks_server.requests == 2


# -- through the protocol ---------------------------------------------------------------------


OpenSocket = Callable[..., Awaitable[tuple[WebsocketCommunicator, Any]]]


def token_authorization(token: str) -> dict[str, str]:
    return {"authorization": token, "host": HOST}


@pytest.fixture
def connect_with(open_socket: OpenSocket) -> Callable[[str], Awaitable[WebsocketCommunicator]]:
    """Open and initialize a socket whose connect credentials carry ``token``."""

    async def connect_(token: str) -> WebsocketCommunicator:
        comm, subprotocol = await open_socket(
            subprotocols=[SUBPROTOCOL, header_subprotocol(token_authorization(token))]
        )
        assert subprotocol == SUBPROTOCOL
        return comm

    return connect_


async def connected(connect_with: Any, token: str) -> WebsocketCommunicator:
    comm = await connect_with(token)
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ACK)
    await assert_sent(comm, KA)
    return comm


def operation_error(kind: str, op_id: str) -> dict[str, Any]:
    return {"type": kind, "id": op_id, "errors": [UNAUTHORIZED]}


async def http_publish(authorization: str | None, event: str = '"hi"') -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return await AsyncClient().post(
        "/event",
        {"channel": "/default/room", "events": [event]},
        content_type="application/json",
        headers=headers,
    )


@pytest.mark.django_db(transaction=True)
async def test_a_valid_token_connects_subscribes_and_publishes(
    jwks_server, configure, default_namespace, connect_with
) -> None:
    token = make_token(issuer=jwks_server.issuer)
    subscriber = await connected(connect_with, token)
    await subscribed(subscriber, "s1", "/default/room")
    publisher = await connected(connect_with, "Bearer " + access_token(issuer=jwks_server.issuer))

    await publish(publisher, "p1", "/default/room", ['{"n":1}'])

    await assert_published(publisher, "p1", [0])
    await assert_sent(subscriber, data("s1", '{"n":1}'))
    assert jwks_server.requests == 1


@pytest.mark.django_db(transaction=True)
async def test_an_expired_token_is_refused_at_connect(
    jwks_server, configure, default_namespace, connect_with
) -> None:
    comm = await connect_with(make_token(issuer=jwks_server.issuer, exp=int(time.time()) - 3600))

    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


@pytest.mark.django_db(transaction=True)
async def test_a_connection_without_a_token_is_refused(configure, default_namespace, open_socket) -> None:
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol({"host": HOST})])

    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


@pytest.mark.django_db(transaction=True)
async def test_operations_with_a_refused_token_fail_and_deliver_nothing(
    jwks_server, configure, default_namespace, connect_with
) -> None:
    good = make_token(issuer=jwks_server.issuer)
    wrong_audience = make_token(issuer=jwks_server.issuer, aud="client-b")
    subscriber = await connected(connect_with, good)
    await subscribed(subscriber, "s1", "/default/room")
    other = await connected(connect_with, good)

    await subscribe(other, "s2", "/default/room", authorization=token_authorization(wrong_audience))
    await assert_sent(other, operation_error("subscribe_error", "s2"))
    await publish(other, "p1", "/default/room", ['"leak"'], authorization=token_authorization(wrong_audience))
    await assert_sent(other, operation_error("publish_error", "p1"))

    await assert_silent(subscriber)
    await assert_silent(other)


@pytest.mark.django_db(transaction=True)
async def test_http_publish_needs_a_valid_token(
    jwks_server, configure, default_namespace, connect_with
) -> None:
    subscriber = await connected(connect_with, make_token(issuer=jwks_server.issuer))
    await subscribed(subscriber, "s1", "/default/room")

    for refused in (
        None,
        "Bearer " + make_token(issuer=jwks_server.issuer, key="intruder"),
        make_token(issuer=jwks_server.issuer, token_use="refresh"),
    ):
        response = await http_publish(refused)
        assert response.status_code == 401
        assert response.json() == {"errors": [UNAUTHORIZED]}
    await assert_silent(subscriber)

    response = await http_publish("Bearer " + access_token(issuer=jwks_server.issuer), '"ok"')
    assert response.status_code == 200
    assert [entry["index"] for entry in response.json()["successful"]] == [0]
    await assert_sent(subscriber, data("s1", '"ok"'))


@pytest.mark.django_db(transaction=True)
async def test_oidc_and_custom_together_route_jwts_and_opaque_tokens(
    jwks_server, configure, default_namespace, connect_with
) -> None:
    configure(modes=["OIDC", "CUSTOM"], custom_handler="tests.realtime.custom_authorizers.authorize")

    jwt_socket = await connected(connect_with, make_token(issuer=jwks_server.issuer))
    opaque_socket = await connected(connect_with, "allow:bob")
    await subscribed(jwt_socket, "s1", "/default/room")
    await subscribed(opaque_socket, "s2", "/default/room")

    # The JWT never reached the custom callable; the opaque token did, per operation.
    assert [(token, ctx["operation"]) for token, ctx in custom_authorizers.calls] == [
        ("allow:bob", "CONNECT"),
        ("allow:bob", "SUBSCRIBE"),
    ]
    # A JWT that OIDC refuses is refused: it is not handed on to CUSTOM.
    expired = make_token(issuer=jwks_server.issuer, exp=int(time.time()) - 3600)
    await subscribe(jwt_socket, "s3", "/default/room", authorization=token_authorization(expired))
    await assert_sent(jwt_socket, operation_error("subscribe_error", "s3"))
    assert len(custom_authorizers.calls) == 2
