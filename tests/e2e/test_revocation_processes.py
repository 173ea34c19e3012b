"""Live revocation and presence across two server processes and Redis (PROTOCOL §12).

Two daphne processes share Redis (the channel layer, where the control group reaches every
process) and the database. On each process, sockets of the credentials that end and sockets of
credentials that stay are open on one channel; when the credentials end (a user deactivated or
their password changed from a third process, a token's ``exp`` or a CUSTOM answer's expiry, the
maximum connection age), the ended sockets on *both* processes get the ``error`` frame and the
close code, and a publish made afterwards reaches every other socket and none of them.
The last test lists presence members held by both processes on one watcher.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .conftest import REPO_ROOT, DaphneFactory, DaphneServer, RedisServer, _manage
from .test_amplify import node_env
from .test_amplify_tokens import OidcIssuer
from .test_presence import AMPLIFY_WATCH, CONNECTED, LiveClient, post_event
from .test_presence import SCRIPT as LIVE_CLIENT

# Fixed waits (expiries, the maximum age, Amplify's 5 s retry) and manage.py processes on a
# shared machine: more than the suite's 60 s per test.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

SETTINGS = "tests.e2e.settings_revocation"
AUDIENCE = "revocation-e2e"
NAMESPACE = "revoke"
SUBPROTOCOL = "aws-appsync-event-ws"
# How long after its cause a close may take (the issue's bound for a revoked key).
CLOSE_BOUND = 1.0
STEP = 10.0


def header_subprotocol(authorization: dict[str, str]) -> str:
    raw = json.dumps(authorization).encode()
    return "header-" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


class Socket:
    """One raw AppSync Events socket subscribed to one channel; it records every frame and its close."""

    def __init__(self, name: str, ws: ClientConnection) -> None:
        self.name = name
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.closed_at: float | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls,
        name: str,
        server: DaphneServer,
        channel: str,
        *,
        authorization: dict[str, str] | None = None,
        cookie: str | None = None,
    ) -> Socket:
        subprotocols = [SUBPROTOCOL]
        headers: dict[str, str] = {}
        if authorization is not None:
            subprotocols.append(header_subprotocol({"host": server.authority, **authorization}))
        if cookie is not None:
            headers = {"Cookie": f"sessionid={cookie}", "Origin": server.http_url}
        ws = await connect(
            server.ws_url,
            subprotocols=subprotocols,
            additional_headers=headers,
            open_timeout=STEP,  # type: ignore[list-item]
        )
        socket = cls(name, ws)
        await ws.send(json.dumps({"type": "connection_init"}))
        assert json.loads(await asyncio.wait_for(ws.recv(), STEP))["type"] == "connection_ack"
        await ws.send(json.dumps({"type": "subscribe", "id": "s", "channel": channel}))
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), STEP))
            if frame.get("type") != "ka":
                break
        assert frame == {"type": "subscribe_success", "id": "s"}, (name, frame)
        socket._reader = asyncio.get_running_loop().create_task(socket._read())
        return socket

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                frame = json.loads(raw)
                if frame.get("type") != "ka":
                    self.frames.append(frame)
        except ConnectionClosed:
            pass
        self.closed_at = time.time()

    async def wait_closed(self, within: float = STEP) -> tuple[int | None, str | None]:
        assert self._reader is not None
        await asyncio.wait_for(asyncio.shield(self._reader), within)
        close = self.ws.protocol.close_rcvd  # what the server sent, not what the client answered
        return (close.code, close.reason) if close is not None else (None, None)

    def events(self) -> list[Any]:
        return [json.loads(frame["event"]) for frame in self.frames if frame.get("type") == "data"]

    async def wait_event(self, event: Any, within: float = STEP) -> None:
        deadline = time.monotonic() + within
        while event not in self.events():
            if time.monotonic() > deadline:
                pytest.fail(f"{self.name} did not receive {event}; it has {self.frames}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            await asyncio.wait_for(self._reader, STEP)


@pytest.fixture
async def sockets() -> AsyncIterator[Callable[..., Any]]:
    opened: list[Socket] = []

    async def open_(*args: Any, **kwargs: Any) -> Socket:
        socket = await Socket.open(*args, **kwargs)
        opened.append(socket)
        return socket

    yield open_
    for socket in opened:
        await socket.close()


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
def servers_env(redis_server: RedisServer, oidc_issuer: OidcIssuer) -> dict[str, str]:
    """What the two servers and the commands that act on them share."""
    return {
        "REDIS_URL": redis_server.url,
        "DJANGO_SETTINGS_MODULE": SETTINGS,
        "RT_E2E_OIDC_ISSUER": oidc_issuer.url,
        "RT_E2E_OIDC_AUDIENCE": AUDIENCE,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
    }


def _namespace_ready(env: dict[str, str]) -> None:
    # Subscribed in every mode, published with the API key; members listed on presence channels.
    _manage(
        env,
        "shell",
        "-c",
        "from realtime.models import Namespace; "
        f"Namespace.objects.update_or_create(name={NAMESPACE!r}, defaults={{"
        f"'subscribe_auth_modes': {['API_KEY', 'USER', 'OIDC', 'CUSTOM']!r}, "
        "'publish_auth_modes': ['API_KEY'], 'presence': True})",
    )


SIGN_IN = """
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
User = get_user_model()
for name in {names!r}:
    user, _ = User.objects.get_or_create(username=name)
    user.is_active = True
    user.set_password("pw-" + name + "-1")
    user.save()
    for _ in range(2):
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        print("session", name, session.session_key)
"""


def sign_in(env: dict[str, str], *names: str) -> dict[str, list[str]]:
    """Two sessions for each user (made or reset here): name -> session keys."""
    sessions: dict[str, list[str]] = {}
    for line in _manage(env, "shell", "-c", SIGN_IN.format(names=list(names))).splitlines():
        if line.startswith("session "):
            _, name, key = line.split()
            sessions.setdefault(name, []).append(key)
    return sessions


def user_change(env: dict[str, str], username: str, change: str) -> None:
    """Run ``change`` (Python, with ``user``) and save the user, from a process of its own."""
    _manage(
        env,
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model; "
        f"user = get_user_model().objects.get(username={username!r}); {change}; user.save()",
    )


async def assert_ended(
    socket: Socket, message: str, code: int, after: float, bound: float = CLOSE_BOUND, error_type: str = ""
) -> None:
    """``socket`` got the ``error`` frame naming ``message``, then the close, ``bound`` s after ``after``."""
    assert await socket.wait_closed() == (code, message), socket.frames
    assert socket.frames[-1] == {
        "type": "error",
        "errors": [{"errorType": error_type or "UnauthorizedException", "message": message}],
    }, socket.name
    assert socket.closed_at is not None and socket.closed_at - after <= bound, (
        socket.name,
        socket.closed_at - after,
    )


async def assert_later_publish_reaches_only(
    server: DaphneServer, channel: str, kept: list[Socket], ended: list[Socket]
) -> None:
    event = {"after": uuid.uuid4().hex[:8]}
    assert await asyncio.to_thread(post_event, server, channel, event) == 200
    for socket in kept:
        await socket.wait_event(event)
        assert socket.closed_at is None, socket.name
    await asyncio.sleep(0.5)
    for socket in ended:
        assert event not in socket.events(), (socket.name, socket.frames)


def channel_of_test() -> str:
    return f"/{NAMESPACE}/room-{uuid.uuid4().hex[:10]}"


async def test_deactivation_a_new_password_and_a_deleted_session_close_the_right_sockets_on_both_processes(
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    e2e_api_key: str,
    servers_env: dict[str, str],
    sockets: Callable[..., Any],
) -> None:
    env = {**e2e_env, **servers_env}
    _namespace_ready(env)
    sessions = sign_in(env, "alice", "bob", "carol")
    first, second = daphne_factory("first", "second", **servers_env)
    channel = channel_of_test()
    key = {"x-api-key": e2e_api_key}

    # On each process: alice, bob and carol each with a session of their own, and an API key.
    by_user: dict[str, list[Socket]] = {"alice": [], "bob": [], "carol": [], "key": []}
    for index, server in enumerate((first, second)):
        for name in ("alice", "bob", "carol"):
            by_user[name].append(
                await sockets(f"{name}@{index}", server, channel, cookie=sessions[name][index])
            )
        by_user["key"].append(await sockets(f"key@{index}", server, channel, authorization=key))

    # Alice deactivated from a third process: both her sockets close, every other stays.
    await asyncio.to_thread(user_change, env, "alice", "user.is_active = False")
    done = time.time()
    for socket in by_user["alice"]:
        await assert_ended(socket, "User deactivated", 4401, done)
    await assert_later_publish_reaches_only(
        first, channel, [*by_user["bob"], *by_user["carol"], *by_user["key"]], by_user["alice"]
    )

    # Bob's password changed: the session auth hash of both his sessions no longer matches, and
    # each process finds its own socket of his to close; carol's, on the same processes, stay.
    await asyncio.to_thread(user_change, env, "bob", "user.set_password('a-new-one-456')")
    done = time.time()
    for socket in by_user["bob"]:
        await assert_ended(socket, "Signed out", 4401, done)
    await assert_later_publish_reaches_only(
        second, channel, [*by_user["carol"], *by_user["key"]], [*by_user["alice"], *by_user["bob"]]
    )

    # One of carol's sessions deleted (signed out there): the socket opened with it closes, on
    # the second process; her other session's socket, on the first, stays.
    await asyncio.to_thread(
        _manage,
        env,
        "shell",
        "-c",
        "from django.contrib.sessions.models import Session; "
        f"Session.objects.filter(session_key={sessions['carol'][1]!r}).delete()",
    )
    done = time.time()
    await assert_ended(by_user["carol"][1], "Signed out", 4401, done)
    await assert_later_publish_reaches_only(
        first,
        channel,
        [by_user["carol"][0], *by_user["key"]],
        [*by_user["alice"], *by_user["bob"], by_user["carol"][1]],
    )


async def test_expired_tokens_close_their_sockets_on_both_processes(
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    e2e_api_key: str,
    oidc_issuer: OidcIssuer,
    servers_env: dict[str, str],
    sockets: Callable[..., Any],
) -> None:
    env = {**e2e_env, **servers_env}
    _namespace_ready(env)
    first, second = daphne_factory("first", "second", **servers_env)
    channel = channel_of_test()
    expiry = int(time.time()) + 6  # time to open eight sockets, with room
    short = oidc_issuer.token(sub="short", aud=AUDIENCE, exp=expiry)
    long = oidc_issuer.token(sub="long", aud=AUDIENCE)
    credentials = {
        "oidc-short": {"authorization": short},
        "custom-short": {"authorization": f"expires-at:{expiry}:custom"},
        "oidc-long": {"authorization": long},
        "key": {"x-api-key": e2e_api_key},
    }
    opened: dict[str, list[Socket]] = {name: [] for name in credentials}
    for index, server in enumerate((first, second)):
        for name, authorization in credentials.items():
            opened[name].append(
                await sockets(f"{name}@{index}", server, channel, authorization=authorization)
            )
    assert time.time() < expiry - 1, "the sockets took too long to open"

    ended = [*opened["oidc-short"], *opened["custom-short"]]
    for socket in ended:
        await assert_ended(socket, "Token expired", 4401, expiry)
        assert socket.closed_at is not None and socket.closed_at >= expiry - 0.05, socket.name
    await assert_later_publish_reaches_only(first, channel, [*opened["oidc-long"], *opened["key"]], ended)


async def test_the_maximum_age_closes_the_old_sockets_on_both_processes_and_not_the_young(
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    e2e_api_key: str,
    servers_env: dict[str, str],
    sockets: Callable[..., Any],
) -> None:
    max_age = 5.0
    env = {**e2e_env, **servers_env}
    _namespace_ready(env)
    first, second = daphne_factory("first", "second", **servers_env, RT_E2E_MAX_AGE=str(max_age))
    channel = channel_of_test()
    key = {"x-api-key": e2e_api_key}

    old = [
        await sockets(f"old@{i}", server, channel, authorization=key)
        for i, server in enumerate((first, second))
    ]
    opened = time.time()
    await asyncio.sleep(max_age / 2)
    young = [
        await sockets(f"young@{i}", server, channel, authorization=key)
        for i, server in enumerate((first, second))
    ]

    message = "The connection reached its maximum age; reconnect."
    for socket in old:
        await assert_ended(socket, message, 4000, opened + max_age, error_type="ConnectionMaxAgeReached")
    assert all(socket.closed_at is None for socket in young)
    await assert_later_publish_reaches_only(second, channel, young, old)


async def test_presence_lists_the_members_held_by_both_processes(
    redis_server: RedisServer,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    e2e_api_key: str,
    servers_env: dict[str, str],
    sockets: Callable[..., Any],
) -> None:
    env = {**e2e_env, **servers_env}
    _namespace_ready(env)
    first, second = daphne_factory("first", "second", **servers_env)
    channel = channel_of_test()
    key = {"x-api-key": e2e_api_key}
    watcher = await sockets("watcher", first, f"/$presence{channel}", authorization=key)

    here = await sockets("here", first, channel, authorization=key)
    there = await sockets("there", second, channel, authorization=key)

    def members(event: dict[str, Any]) -> int:
        return len(event.get("members", []))

    both = await wait_presence(watcher, lambda event: event["connections"] == 2 and members(event) == 2)
    assert both["subscriptions"] == 2 and both["channel"] == channel
    listed = both["members"]
    assert len({member["connection"] for member in listed}) == 2, listed
    assert all(set(member) == {"connection"} for member in listed), listed

    # The member held by the other process leaves: the watcher sees it go, and who stays.
    await there.close()
    one = await wait_presence(watcher, lambda event: event["connections"] == 1)
    assert one["members"] != [] and len(one["members"]) == 1
    assert one["left"] != [] and {one["left"][0]["connection"], one["members"][0]["connection"]} == {
        member["connection"] for member in listed
    }
    assert here.closed_at is None


async def wait_presence(watcher: Socket, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + STEP
    while True:
        for event in reversed(watcher.events()):
            if predicate(event):
                return event
        if time.monotonic() > deadline:
            pytest.fail(f"the watcher never saw it; it has {watcher.frames}")
        await asyncio.sleep(0.05)


# -- what the unmodified Amplify client does with these closes (PROTOCOL §12) ----------------------


@pytest.fixture
async def amplify() -> AsyncIterator[Callable[..., Any]]:
    started: list[LiveClient] = []

    async def start(
        node: str, server: DaphneServer, channel: str, lambda_token: str | None = None
    ) -> LiveClient:
        env = node_env(server, {"RT_LAMBDA_TOKEN": lambda_token} if lambda_token else None)
        process = await asyncio.create_subprocess_exec(
            node,
            str(LIVE_CLIENT),
            channel,
            cwd=REPO_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        client = LiveClient(process)
        started.append(client)
        return client

    yield start
    for client in started:
        await client.stop()


def states(client: LiveClient) -> list[str]:
    return [line["state"] for line in client.lines if "state" in line]


@pytest.mark.node
async def test_amplify_gives_up_after_its_token_expired_and_the_other_amplify_client_stays(
    node_executable: str,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    servers_env: dict[str, str],
    amplify: Callable[..., Any],
) -> None:
    _namespace_ready({**e2e_env, **servers_env})
    first, second = daphne_factory("first", "second", tls=True, **servers_env)
    channel = channel_of_test()
    expiry = int(time.time()) + 8
    expiring = await amplify(node_executable, first, channel, f"expires-at:{expiry}:amplify")
    kept = await amplify(node_executable, second, channel)
    await expiring.ready()
    await kept.ready()

    line = await expiring.wait_for(lambda line: line.get("state") == "ConnectionDisrupted", within=STEP + 8)
    assert expiry - 0.05 <= line["at"] / 1000 <= expiry + CLOSE_BOUND, (expiry, expiring.lines)
    event = {"after": "expiry"}
    assert await asyncio.to_thread(post_event, second, channel, event) == 200
    await kept.wait_for(lambda line: line.get("event") == event)
    # Amplify 6.22.1 reconnects once, 5 s later, with the same token; its answer is past the
    # expiry, the connect is refused (connection_error UnauthorizedException), the subscription's
    # error callback hears it, and no other attempt follows. Unlike the API-key client after a
    # revocation (test_presence), this lambda-mode client is left in ConnectionDisrupted, not
    # Disconnected: what stops it is the same refused reconnect.
    since = first.log_size()
    await expiring.wait_for(lambda line: "error" in line, within=STEP)
    await asyncio.sleep(AMPLIFY_WATCH / 2)
    assert expiring.events() == [], expiring.lines
    assert states(expiring) == [*CONNECTED, "ConnectionDisrupted", "Connecting", "ConnectionDisrupted"]
    assert [line["error"] for line in expiring.lines if "error" in line] == [
        {"errors": ["Connection failed: UnauthorizedException"]}
    ]
    assert first.log_text(since).count("WSCONNECTING") <= 1, "Amplify tried again after the refusal"
    assert states(kept) == CONNECTED


@pytest.mark.node
async def test_amplify_reconnects_after_the_maximum_age_and_receives_again(
    node_executable: str,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    servers_env: dict[str, str],
    amplify: Callable[..., Any],
) -> None:
    max_age = 8.0
    _namespace_ready({**e2e_env, **servers_env})
    (server,) = daphne_factory("aged", tls=True, **servers_env, RT_E2E_MAX_AGE=str(max_age))
    channel = channel_of_test()
    client = await amplify(node_executable, server, channel)
    await client.ready()

    disrupted = await client.wait_for(
        lambda line: line.get("state") == "ConnectionDisrupted", within=STEP + max_age
    )
    # Amplify does not look at the close code (4000): a disruption, then a reconnect 5 s later,
    # which the server accepts, and the subscription is sent again.
    seen = client.lines.index(disrupted)
    await client.wait_for(lambda line: line.get("state") == "Connected", after=seen)
    await asyncio.sleep(1)
    event = {"after": "maximum age"}
    assert await asyncio.to_thread(post_event, server, channel, event) == 200
    await client.wait_for(lambda line: line.get("event") == event)
    assert states(client)[: len(CONNECTED) + 3] == [
        *CONNECTED,
        "ConnectionDisrupted",
        "Connecting",
        "Connected",
    ]
    assert not [line for line in client.lines if "error" in line], client.lines
