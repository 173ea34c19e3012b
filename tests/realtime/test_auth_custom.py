"""The CUSTOM auth mode: AppSync's Lambda authorizer as a dotted-path callable (PROTOCOL §5.5)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import AsyncClient

from realtime import handlers
from realtime.auth import AuthRequest, Identity, Operation, RequestInfo, custom, get_authorizer
from realtime.auth.custom import CustomAuthorizer
from realtime.exceptions import Transport, Unauthorized
from realtime.handlers import HandlerContext, HandlerKind

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
from .custom_authorizers import calls

SYNC = "tests.realtime.custom_authorizers.authorize"
ASYNC = "tests.realtime.custom_authorizers.authorize_async"
SOURCE_IP = "203.0.113.9"
SIGV4_AUTHORIZATION = (
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240101/us-east-1/appsync/aws4_request, "
    "SignedHeaders=host;x-amz-date, Signature=abcdef"
)


@pytest.fixture(autouse=True)
def _fresh_calls() -> Iterator[None]:
    # Cached results are reset with the authorizer (tests/conftest.py).
    calls.clear()
    yield
    calls.clear()


@pytest.fixture
def configure(settings: Any) -> Callable[..., None]:
    """CUSTOM for every operation; ``HANDLER``/``TIMEOUT``/``CACHE_TTL`` overrides merge in."""

    def configure_(**section: Any) -> None:
        settings.REALTIME = {
            "CONNECTION_AUTH_MODES": ["CUSTOM"],
            "DEFAULT_PUBLISH_AUTH_MODES": ["CUSTOM"],
            "DEFAULT_SUBSCRIBE_AUTH_MODES": ["CUSTOM"],
            "CUSTOM_AUTHORIZER": {"HANDLER": SYNC, **section},
        }

    configure_()
    return configure_


def auth_request(
    operation: Operation = Operation.PUBLISH,
    channel: str | None = "/default/room",
    headers: dict[str, str] | None = None,
) -> AuthRequest:
    return AuthRequest(
        operation=operation,
        request=RequestInfo(transport=Transport.HTTP, headers=headers or {}, source_ip=SOURCE_IP),
        namespace=None if operation is Operation.CONNECT else "default",
        channel=None if operation is Operation.CONNECT else channel,
    )


async def authenticate(token: str | None, auth: AuthRequest | None = None, **credentials: str) -> Any:
    if token is not None:
        credentials["authorization"] = token
    return await get_authorizer("CUSTOM").authenticate(credentials, auth or auth_request())


async def assert_refused(token: str, auth: AuthRequest | None = None) -> None:
    with pytest.raises(Unauthorized):
        await authenticate(token, auth)


# -- the callable's contract ---------------------------------------------------------------


@pytest.mark.parametrize("handler", [SYNC, ASYNC])
async def test_an_allowed_token_gives_handlers_the_handler_context(configure, handler) -> None:
    configure(HANDLER=handler)

    identity = await authenticate("allow:alice")

    assert identity == Identity(mode="CUSTOM", context={"handlerContext": {"user": "alice"}}, ttl=300.0)
    assert identity.as_context() == {"handlerContext": {"user": "alice"}}


async def test_snake_case_answers_work_too(configure) -> None:
    identity = await authenticate("snake:bob")

    assert identity.as_context() == {"handlerContext": {"user": "bob"}}


async def test_an_answer_without_handler_context_gives_an_empty_one(configure) -> None:
    identity = await authenticate("ttl:5")

    assert identity == Identity(mode="CUSTOM", context={"handlerContext": {}}, ttl=5.0)


@pytest.mark.parametrize("handler", [SYNC, ASYNC])
async def test_a_denial_is_unauthorized(configure, handler) -> None:
    configure(HANDLER=handler)

    await assert_refused("deny")


async def test_the_callable_gets_the_token_verbatim_and_the_request_context(configure) -> None:
    headers = {"host": HOST, "x-custom": "1", "cookie": "sessionid=secret", "authorization": "allow:a"}

    await authenticate("allow:a", auth_request(Operation.SUBSCRIBE, "/default/*", headers))
    await authenticate("allow:a", auth_request(Operation.CONNECT))

    assert calls == [
        (
            "allow:a",
            {
                "operation": "SUBSCRIBE",
                "namespace": "default",
                "channel": "/default/*",
                "requestHeaders": {"host": HOST, "x-custom": "1", "authorization": "allow:a"},
                "sourceIp": SOURCE_IP,
            },
        ),
        (
            "allow:a",
            {
                "operation": "CONNECT",
                "namespace": None,
                "channel": None,
                "requestHeaders": {},
                "sourceIp": SOURCE_IP,
            },
        ),
    ]


@pytest.mark.parametrize(
    "credentials",
    [
        {},
        {"x-api-key": "da2-key"},
        {"authorization": ""},
        {"authorization": SIGV4_AUTHORIZATION},
    ],
)
async def test_credentials_without_a_token_are_left_to_other_modes(configure, credentials) -> None:
    assert await authenticate(None, **credentials) is None
    assert calls == []


async def test_a_token_longer_than_2048_characters_is_refused_without_a_call(configure) -> None:
    assert await authenticate("allow:" + "x" * 2042) is not None

    await assert_refused("allow:" + "x" * 2043)
    assert len(calls) == 1


# -- caching -------------------------------------------------------------------------------------


async def test_an_answer_is_reused_within_its_ttl(configure) -> None:
    first = await authenticate("allow:alice")
    again = await authenticate("allow:alice")

    assert again == first
    assert len(calls) == 1


async def test_a_denial_is_cached_too(configure) -> None:
    await assert_refused("deny")
    await assert_refused("deny")

    assert len(calls) == 1


async def test_the_cache_key_is_token_operation_namespace_and_channel(configure) -> None:
    await authenticate("allow:alice", auth_request(Operation.PUBLISH, "/default/a"))
    await authenticate("allow:alice", auth_request(Operation.PUBLISH, "/default/b"))
    await authenticate("allow:alice", auth_request(Operation.SUBSCRIBE, "/default/a"))
    await authenticate("allow:bob", auth_request(Operation.PUBLISH, "/default/a"))
    await authenticate("allow:alice", auth_request(Operation.PUBLISH, "/default/a"))

    assert len(calls) == 4


async def test_ttl_override_zero_disables_caching(configure) -> None:
    for _ in range(3):
        assert await authenticate("nocache:alice") is not None

    assert len(calls) == 3


async def test_an_answer_expires_after_its_ttl_override(configure) -> None:
    await authenticate("ttl:0.05")
    await authenticate("ttl:0.05")
    assert len(calls) == 1

    await asyncio.sleep(0.1)
    await authenticate("ttl:0.05")
    assert len(calls) == 2


async def test_cache_ttl_zero_disables_caching_by_default(configure) -> None:
    configure(CACHE_TTL=0)

    await authenticate("allow:alice")
    await authenticate("allow:alice")

    assert len(calls) == 2


async def test_the_cache_is_bounded(configure) -> None:
    authorizer = CustomAuthorizer(max_cached=3)

    for index in range(10):
        await authorizer.authenticate({"authorization": f"allow:user{index}"}, auth_request())

    assert len(authorizer.result_cache) <= 3


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("handler", [SYNC, ASYNC])
async def test_a_slow_callable_times_out_as_unauthorized(configure, caplog, handler) -> None:
    configure(HANDLER=handler, TIMEOUT=0.05)

    with caplog.at_level(logging.ERROR, logger="realtime"):
        await assert_refused("slow")

    assert f"authorizer {handler} did not answer PUBLISH /default/room within 0.05s" in caplog.text
    # A timeout is not an answer: the next request asks again.
    await assert_refused("slow")
    assert len(calls) == 2


@pytest.mark.parametrize("handler", [SYNC, ASYNC])
async def test_a_raising_callable_is_unauthorized_and_logged_without_the_token(
    configure, caplog, handler
) -> None:
    configure(HANDLER=handler)

    with caplog.at_level(logging.ERROR, logger="realtime"):
        await assert_refused("boom")

    [record] = caplog.records
    assert record.getMessage() == f"CUSTOM: authorizer {handler} failed on PUBLISH /default/room"
    assert record.exc_info is not None and "the authorizer has a bug" in str(record.exc_info[1])
    assert "boom" not in caplog.text
    await assert_refused("boom")
    assert len(calls) == 2


@pytest.mark.parametrize(
    ("token", "reason"),
    [("garbage", "returned str, not a dict"), ("not-bool", "is_authorized must be a bool")],
)
async def test_a_malformed_answer_is_unauthorized_and_logged(configure, caplog, token, reason) -> None:
    with caplog.at_level(logging.ERROR, logger="realtime"):
        await assert_refused(token)

    assert reason in caplog.text


@pytest.mark.parametrize(
    "answer",
    [
        {},
        {"isAuthorized": 1},
        {"isAuthorized": True, "handlerContext": ["not", "a", "dict"]},
        {"isAuthorized": True, "handlerContext": {"when": object()}},
        {"isAuthorized": True, "ttlOverride": -1},
        {"isAuthorized": True, "ttlOverride": "60"},
        {"isAuthorized": True, "ttlOverride": True},
    ],
)
def test_parse_result_refuses_other_shapes(answer) -> None:
    with pytest.raises(custom.MalformedResult):
        custom.parse_result(answer, 300)


def test_parse_result_prefers_snake_case_and_reads_camel_case() -> None:
    assert custom.parse_result(
        {"isAuthorized": False, "is_authorized": True, "ttlOverride": 7}, 300
    ) == custom.Answer(True, {}, 7.0, None)


@pytest.mark.parametrize(
    ("answer", "expires_at"),
    [
        ({"isAuthorized": True}, None),
        ({"isAuthorized": True, "expiresAt": 1_700_000_060}, 1_700_000_060.0),
        ({"isAuthorized": True, "expires_at": 1_700_000_060.5}, 1_700_000_060.5),
        ({"isAuthorized": True, "expiresIn": 90}, 1_700_000_090.0),
        ({"isAuthorized": True, "expires_in": 0}, 1_700_000_000.0),
    ],
)
def test_parse_result_reads_when_the_credentials_end(answer, expires_at) -> None:
    assert custom.parse_result(answer, 300, now=1_700_000_000).expires_at == expires_at


@pytest.mark.parametrize(
    "answer",
    [
        {"isAuthorized": True, "expiresAt": 10, "expiresIn": 10},
        {"isAuthorized": True, "expiresIn": -1},
        {"isAuthorized": True, "expiresAt": "tomorrow"},
        {"isAuthorized": True, "expires_in": float("inf")},
        {"isAuthorized": True, "expires_at": True},
    ],
)
def test_parse_result_refuses_a_malformed_expiry(answer) -> None:
    with pytest.raises(custom.MalformedResult):
        custom.parse_result(answer, 300, now=1_700_000_000)


async def test_an_answer_whose_credentials_already_ended_refuses(configure) -> None:
    with pytest.raises(Unauthorized, match="Token expired"):
        await authenticate("expired:alice", auth_request(Operation.CONNECT, None))


async def test_without_a_handler_setting_every_token_is_refused(configure, caplog) -> None:
    configure(HANDLER=None)

    with caplog.at_level(logging.ERROR, logger="realtime"):
        await assert_refused("allow:alice")

    assert "['HANDLER'] is not set" in caplog.text


async def test_an_unimportable_handler_is_refused_and_logged(configure, caplog) -> None:
    configure(HANDLER="tests.realtime.custom_authorizers.missing")

    with caplog.at_level(logging.ERROR, logger="realtime"):
        await assert_refused("allow:alice")

    assert "cannot be imported" in caplog.text


async def test_changing_settings_drops_cached_answers(configure) -> None:
    await authenticate("allow:alice")
    configure(TIMEOUT=5)
    await authenticate("allow:alice")

    assert len(calls) == 2


# -- through the protocol ---------------------------------------------------------------------


OpenSocket = Callable[..., Awaitable[tuple[WebsocketCommunicator, Any]]]


def token_authorization(token: str) -> dict[str, str]:
    return {"authorization": token, "host": HOST}


@pytest.fixture
def connected(open_socket: OpenSocket) -> Callable[[str], Awaitable[WebsocketCommunicator]]:
    """A socket whose connect credentials carry ``token``, acknowledged."""

    async def connect_(token: str) -> WebsocketCommunicator:
        comm, subprotocol = await open_socket(
            subprotocols=[SUBPROTOCOL, header_subprotocol(token_authorization(token))]
        )
        assert subprotocol == SUBPROTOCOL
        await connection_init(comm)
        await assert_sent(comm, CONNECTION_ACK)
        await assert_sent(comm, KA)
        return comm

    return connect_


@pytest.fixture
def on_publish() -> Iterator[Callable[[str, Any], None]]:
    registered: list[str] = []

    def register(name: str, fn: Any) -> None:
        handlers.on_publish(name)(fn)
        registered.append(name)

    yield register
    for name in registered:
        handlers.unregister(HandlerKind.PUBLISH, name)


def operation_error(kind: str, op_id: str) -> dict[str, Any]:
    return {"type": kind, "id": op_id, "errors": [UNAUTHORIZED]}


async def http_publish(authorization: str | None, event: str = '"hi"', channel: str = "/default/room") -> Any:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return await AsyncClient().post(
        "/event", {"channel": channel, "events": [event]}, content_type="application/json", headers=headers
    )


@pytest.mark.django_db(transaction=True)
async def test_an_allowed_token_connects_subscribes_and_publishes_once_per_operation(
    configure, default_namespace, connected
) -> None:
    subscriber = await connected("allow:alice")
    await subscribed(subscriber, "s1", "/default/room")
    publisher = await connected("allow:bob")

    for index in range(3):
        await publish(publisher, f"p{index}", "/default/room", [f'{{"n":{index}}}'])
        await assert_published(publisher, f"p{index}", [0])
        await assert_sent(subscriber, data("s1", f'{{"n":{index}}}'))

    assert [(token, ctx["operation"]) for token, ctx in calls] == [
        ("allow:alice", "CONNECT"),
        ("allow:alice", "SUBSCRIBE"),
        ("allow:bob", "CONNECT"),
        ("allow:bob", "PUBLISH"),
    ]


@pytest.mark.django_db(transaction=True)
async def test_ttl_override_zero_asks_the_callable_on_every_operation(
    configure, default_namespace, connected
) -> None:
    publisher = await connected("nocache:bob")

    for index in range(3):
        await publish(publisher, f"p{index}", "/default/room", ['"x"'])
        await assert_published(publisher, f"p{index}", [0])

    assert [ctx["operation"] for _, ctx in calls] == ["CONNECT", "PUBLISH", "PUBLISH", "PUBLISH"]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("token", ["deny", "boom", "garbage"])
async def test_a_refused_connection_gets_connection_error(
    configure, default_namespace, open_socket, token
) -> None:
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol(token_authorization(token))])

    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


@pytest.mark.django_db(transaction=True)
async def test_a_slow_authorizer_refuses_the_connection(configure, default_namespace, open_socket) -> None:
    configure(HANDLER=ASYNC, TIMEOUT=0.05)
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol(token_authorization("slow"))])

    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ERROR)


@pytest.mark.django_db(transaction=True)
async def test_refused_operations_get_their_error_frames_and_deliver_nothing(
    configure, default_namespace, connected
) -> None:
    subscriber = await connected("allow:alice")
    await subscribed(subscriber, "s1", "/default/alice")
    owner = await connected("owner:bob")

    # The callable decides per channel: bob may not use alice's channel.
    await subscribe(owner, "s2", "/default/alice")
    await assert_sent(owner, operation_error("subscribe_error", "s2"))
    await publish(owner, "p1", "/default/alice", ['"leak"'])
    await assert_sent(owner, operation_error("publish_error", "p1"))
    # An operation's own authorization replaces the connection's.
    await publish(owner, "p2", "/default/alice", ['"leak"'], authorization=token_authorization("deny"))
    await assert_sent(owner, operation_error("publish_error", "p2"))
    await publish(owner, "p3", "/default/alice", ['"leak"'], authorization=token_authorization("boom"))
    await assert_sent(owner, operation_error("publish_error", "p3"))
    await assert_silent(subscriber)

    await subscribed(owner, "s3", "/default/bob/inbox")
    await publish(owner, "p4", "/default/alice", ['"hello"'], authorization=token_authorization("allow:x"))
    await assert_published(owner, "p4", [0])
    await assert_sent(subscriber, data("s1", '"hello"'))


@pytest.mark.django_db(transaction=True)
async def test_http_publish_is_authorized_by_the_callable(configure, default_namespace, connected) -> None:
    subscriber = await connected("allow:alice")
    await subscribed(subscriber, "s1", "/default/room")

    for refused in (None, "deny", "boom", "x" * 2049):
        response = await http_publish(refused)
        assert response.status_code == 401
        assert response.json() == {"errors": [UNAUTHORIZED]}
    await assert_silent(subscriber)

    response = await http_publish("allow:bob", '"ok"')
    assert response.status_code == 200
    await assert_sent(subscriber, data("s1", '"ok"'))
    token, context = calls[-1]
    assert token == "allow:bob"
    assert context["operation"] == "PUBLISH"
    assert context["channel"] == "/default/room"
    assert context["sourceIp"] == "127.0.0.1"
    assert context["requestHeaders"]["authorization"] == "allow:bob"


@pytest.mark.django_db(transaction=True)
async def test_on_publish_sees_the_handler_context_as_identity(
    configure, default_namespace, connected, on_publish
) -> None:
    seen: list[Any] = []

    def stamp(ctx: HandlerContext) -> list[handlers.OutgoingEvent]:
        seen.append(ctx.identity)
        user = ctx.identity["handlerContext"]["user"]
        return [handlers.OutgoingEvent(event.id, {"from": user, **event.payload}) for event in ctx.events]

    on_publish("default", stamp)
    subscriber = await connected("allow:alice")
    await subscribed(subscriber, "s1", "/default/room")

    bob = token_authorization("snake:bob")
    await publish(subscriber, "p1", "/default/room", ['{"text":"hi"}'], authorization=bob)
    await assert_sent(subscriber, data("s1", '{"from":"bob","text":"hi"}'))
    await assert_published(subscriber, "p1", [0])
    response = await http_publish("allow:carol", '{"text":"yo"}')
    assert response.status_code == 200
    await assert_sent(subscriber, data("s1", '{"from":"carol","text":"yo"}'))

    assert seen == [{"handlerContext": {"user": "bob"}}, {"handlerContext": {"user": "carol"}}]


@pytest.mark.django_db(transaction=True)
async def test_a_socket_closes_when_its_answers_credentials_end_and_no_other(
    configure, default_namespace, connected
) -> None:
    expiring = await connected("expires:0.5:alice")
    staying = await connected("allow:bob")
    for comm in (expiring, staying):
        await subscribed(comm, "s", "/default/room")

    expired = {
        "type": "error",
        "errors": [{"errorType": "UnauthorizedException", "message": "Token expired"}],
    }
    await assert_sent(expiring, expired, timeout=3)
    close = await assert_closed(expiring, 4401)
    assert close["reason"] == "Token expired"
    await publish(staying, "p", "/default/room", ['"after"'])
    await assert_sent(staying, data("s", '"after"'))
    await assert_published(staying, "p", [0])
    await assert_silent(staying)
    # Its answer was to be cached 300 s, but not past the credentials: the callable is asked again.
    asked = len(calls)
    identity = await authenticate("expires:0.5:alice", auth_request(Operation.CONNECT, None))
    assert len(calls) == asked + 1 and identity.expires_at is not None
