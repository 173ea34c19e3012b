"""The IAM auth mode: SigV4 made by botocore, verified over WebSocket and HTTP (PROTOCOL §5.1-§5.4).

Signatures come from botocore, signed the way the AppSync Events Python
tutorial signs WebSocket operations: a ``POST https://<host>/event`` whose body
is ``{}``, ``{"channel":...}`` or ``{"channel":...,"events":[...]}`` and whose
signed headers form the authorization object.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from django.core.management import CommandError, call_command
from django.test import AsyncClient, override_settings

from realtime.auth import AuthRequest, Operation, RequestInfo
from realtime.auth.iam import IamAuthorizer
from realtime.exceptions import Transport, Unauthorized
from realtime.models import IamCredential, Namespace
from realtime.store.services import iamcredential_create, iamcredential_revoke

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
)

pytestmark = pytest.mark.django_db(transaction=True)

REGION = "eu-west-2"
IAM_ONLY = {
    "CONNECTION_AUTH_MODES": ["IAM"],
    "DEFAULT_PUBLISH_AUTH_MODES": ["IAM"],
    "DEFAULT_SUBSCRIBE_AUTH_MODES": ["IAM"],
    "IAM": {"REGION": REGION},
}
APPSYNC_HEADERS = {
    "accept": "application/json, text/javascript",
    "content-encoding": "amz-1.0",
    "content-type": "application/json; charset=UTF-8",
}
# The Django test client's Host.
HTTP_HOST = "testserver"
ROOM = "/default/room"


@pytest.fixture(autouse=True)
def _iam_mode():
    # Entering and leaving the override resets the credential cache (realtime.state).
    with override_settings(REALTIME=IAM_ONLY):
        yield


@pytest.fixture
def credential(default_namespace: Namespace) -> IamCredential:
    return iamcredential_create(
        description="test", publish_namespaces=["default"], subscribe_namespaces=["default"]
    )


def sign(
    credential: IamCredential,
    body: str,
    *,
    secret: str | None = None,
    region: str = REGION,
    service: str = "appsync",
    at: dt.datetime | None = None,
    host: str | None = HOST,
    url: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, str]:
    """botocore's signed headers for a POST of ``body``: the authorization object."""
    headers = dict(APPSYNC_HEADERS)
    if host is not None:
        headers["host"] = host
    headers.update(extra_headers or {})
    request = AWSRequest(
        method="POST", url=url or f"https://{host or HOST}/event", data=body.encode(), headers=headers
    )
    keys = Credentials(credential.access_key_id, secret or credential.secret_access_key)
    signed_at = (at or dt.datetime.now(dt.UTC)).replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=signed_at):
        SigV4Auth(keys, service, region).add_auth(request)
    return dict(request.headers.items())


def subscribe_body(channel: str) -> str:
    return json.dumps({"channel": channel}, separators=(",", ":"))


def publish_body(channel: str, events: list[str], *, ensure_ascii: bool = True) -> str:
    return json.dumps(
        {"channel": channel, "events": events}, separators=(",", ":"), ensure_ascii=ensure_ascii
    )


def subscribe_error(sub_id: str) -> dict[str, Any]:
    return {"type": "subscribe_error", "id": sub_id, "errors": [UNAUTHORIZED]}


def publish_error(pub_id: str) -> dict[str, Any]:
    return {"type": "publish_error", "id": pub_id, "errors": [UNAUTHORIZED]}


@pytest.fixture
def open_iam(open_socket):
    """Open a socket with a connect authorization, Amplify-style (``header-`` subprotocol)."""

    async def open_(authorization: dict[str, str]):
        comm, subprotocol = await open_socket(subprotocols=[SUBPROTOCOL, header_subprotocol(authorization)])
        assert subprotocol == SUBPROTOCOL
        return comm

    return open_


@pytest.fixture
def connected(open_iam, credential):
    """A socket whose connect was authorized and acknowledged."""

    async def connect_():
        comm = await open_iam(sign(credential, "{}"))
        await connection_init(comm)
        await assert_sent(comm, CONNECTION_ACK)
        await assert_sent(comm, KA)
        return comm

    return connect_


async def subscribed_iam(comm, credential: IamCredential, sub_id: str, channel: str) -> None:
    await subscribe(comm, sub_id, channel, sign(credential, subscribe_body(channel)))
    await assert_sent(comm, {"type": "subscribe_success", "id": sub_id})


# -- connect ---------------------------------------------------------------------------


async def test_a_signed_connect_is_acknowledged(connected):
    await connected()


async def test_a_connect_signed_without_a_host_key_uses_the_upgrade_requests_host(open_socket, credential):
    # A bare botocore signer signs the URL's host but does not add it to the headers.
    authorization = sign(credential, "{}", host=None)
    assert "host" not in {name.lower() for name in authorization}
    comm, _ = await open_socket(
        subprotocols=[SUBPROTOCOL, header_subprotocol(authorization)], headers=[(b"host", HOST.encode())]
    )

    await connection_init(comm)

    await assert_sent(comm, CONNECTION_ACK)


async def test_a_connect_signed_in_upgrade_headers_is_acknowledged(open_socket, credential):
    authorization = sign(credential, "{}")
    headers = [(name.lower().encode(), value.encode()) for name, value in authorization.items()]
    comm, _ = await open_socket(subprotocols=[SUBPROTOCOL], headers=headers)

    await connection_init(comm)

    await assert_sent(comm, CONNECTION_ACK)


def _stale(credential: IamCredential) -> dict[str, str]:
    return sign(credential, "{}", at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=301))


def _future(credential: IamCredential) -> dict[str, str]:
    return sign(credential, "{}", at=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=301))


def _tampered_date(credential: IamCredential) -> dict[str, str]:
    authorization = sign(credential, "{}")
    signed_at = dt.datetime.strptime(authorization["X-Amz-Date"], "%Y%m%dT%H%M%SZ")
    authorization["X-Amz-Date"] = (signed_at + dt.timedelta(seconds=1)).strftime("%Y%m%dT%H%M%SZ")
    return authorization


def _unknown_key(credential: IamCredential) -> dict[str, str]:
    stranger = IamCredential(
        access_key_id="AKIAUNKNOWN000000000", secret_access_key=credential.secret_access_key
    )
    return sign(stranger, "{}")


@pytest.mark.parametrize(
    "make_authorization",
    [
        pytest.param(lambda c: sign(c, "{}", secret="x" * 40), id="wrong-secret"),
        pytest.param(lambda c: sign(c, "{}", region="us-east-1"), id="wrong-region"),
        pytest.param(lambda c: sign(c, "{}", service="appsync-api"), id="wrong-service"),
        pytest.param(_stale, id="stale-date"),
        pytest.param(_future, id="future-date"),
        pytest.param(_tampered_date, id="tampered-date"),
        pytest.param(_unknown_key, id="unknown-key"),
        pytest.param(lambda c: sign(c, subscribe_body(ROOM)), id="signed-a-subscribe-body"),
        pytest.param(lambda c: {**sign(c, "{}"), "host": "elsewhere.example"}, id="tampered-host"),
    ],
)
async def test_a_connect_that_does_not_check_out_is_refused(open_iam, credential, make_authorization):
    comm = await open_iam(make_authorization(credential))

    await connection_init(comm)

    await assert_sent(comm, CONNECTION_ERROR)
    await assert_closed(comm, 1000)


async def test_a_revoked_key_cannot_connect(open_iam, credential):
    await sync_to_async(iamcredential_revoke)(access_key_id=credential.access_key_id)
    comm = await open_iam(sign(credential, "{}"))

    await connection_init(comm)

    await assert_sent(comm, CONNECTION_ERROR)


async def test_a_key_without_connect_permission_cannot_connect(open_iam, default_namespace):
    credential = await sync_to_async(iamcredential_create)(can_connect=False, subscribe_namespaces=["*"])
    comm = await open_iam(sign(credential, "{}"))

    await connection_init(comm)

    await assert_sent(comm, CONNECTION_ERROR)


async def test_a_signature_within_the_clock_skew_is_accepted(open_iam, credential):
    comm = await open_iam(sign(credential, "{}", at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=240)))

    await connection_init(comm)

    await assert_sent(comm, CONNECTION_ACK)


# -- subscribe -------------------------------------------------------------------------------


async def test_a_signed_subscribe_succeeds_and_receives_signed_publishes(connected, credential):
    subscriber = await connected()
    publisher = await connected()
    await subscribed_iam(subscriber, credential, "s1", "/default/*")
    events = ['{"text":"hi/there"}', '"caf\u00e9"']

    await publish(publisher, "p1", ROOM, events, sign(credential, publish_body(ROOM, events)))

    await assert_published(publisher, "p1", [0, 1])
    assert await subscriber.receive_json_from() == data("s1", events[0])
    assert await subscriber.receive_json_from() == data("s1", events[1])


async def test_a_publish_signed_like_javascript_without_ascii_escapes_is_accepted(connected, credential):
    comm = await connected()
    events = ['{"text":"caf\u00e9 \u2603"}']

    await publish(comm, "p1", ROOM, events, sign(credential, publish_body(ROOM, events, ensure_ascii=False)))

    await assert_published(comm, "p1", [0])


async def test_a_subscribe_for_another_channel_than_signed_is_refused(connected, credential):
    comm = await connected()

    await subscribe(comm, "s1", "/default/other", sign(credential, subscribe_body(ROOM)))

    await assert_sent(comm, subscribe_error("s1"))


async def test_a_subscribe_without_its_own_signature_is_refused(connected):
    # The connection's credentials signed "{}", not this subscribe.
    comm = await connected()

    await subscribe(comm, "s1", ROOM)

    await assert_sent(comm, subscribe_error("s1"))


async def test_a_subscribe_outside_the_keys_namespaces_is_refused(open_iam, default_namespace):
    await sync_to_async(Namespace.objects.create)(name="other")
    credential = await sync_to_async(iamcredential_create)(subscribe_namespaces=["other"])
    comm = await open_iam(sign(credential, "{}"))
    await connection_init(comm)
    await assert_sent(comm, CONNECTION_ACK)
    await assert_sent(comm, KA)

    await subscribe(comm, "s1", ROOM, sign(credential, subscribe_body(ROOM)))
    await assert_sent(comm, subscribe_error("s1"))
    await subscribed_iam(comm, credential, "s2", "/other/room")


async def test_a_subscribe_signed_with_a_wrong_secret_is_refused(connected, credential):
    comm = await connected()

    await subscribe(comm, "s1", ROOM, sign(credential, subscribe_body(ROOM), secret="y" * 40))

    await assert_sent(comm, subscribe_error("s1"))


# -- WebSocket publish --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent_channel", "sent_events"),
    [
        pytest.param("/default/other", ['{"n":1}'], id="tampered-channel"),
        pytest.param(ROOM, ['{"n":2}'], id="tampered-event"),
        pytest.param(ROOM, ['{"n":1}', '{"n":1}'], id="added-event"),
    ],
)
async def test_a_tampered_publish_is_refused_and_delivers_nothing(
    connected, credential, sent_channel, sent_events
):
    subscriber = await connected()
    await subscribed_iam(subscriber, credential, "s1", "/default/*")
    publisher = await connected()

    authorization = sign(credential, publish_body(ROOM, ['{"n":1}']))
    await publish(publisher, "p1", sent_channel, sent_events, authorization)

    await assert_sent(publisher, publish_error("p1"))
    await assert_silent(subscriber)


async def test_a_publish_outside_the_keys_namespaces_is_refused_and_delivers_nothing(
    connected, open_iam, credential
):
    subscriber = await connected()
    await subscribed_iam(subscriber, credential, "s1", ROOM)
    reader = await sync_to_async(iamcredential_create)(subscribe_namespaces=["*"])
    publisher = await open_iam(sign(reader, "{}"))
    await connection_init(publisher)
    await assert_sent(publisher, CONNECTION_ACK)
    await assert_sent(publisher, KA)

    events = ['{"n":1}']
    await publish(publisher, "p1", ROOM, events, sign(reader, publish_body(ROOM, events)))

    await assert_sent(publisher, publish_error("p1"))
    await assert_silent(subscriber)


async def test_a_publish_by_a_key_revoked_after_connecting_is_refused(connected, credential):
    comm = await connected()
    await sync_to_async(iamcredential_revoke)(access_key_id=credential.access_key_id)
    events = ['{"n":1}']

    await publish(comm, "p1", ROOM, events, sign(credential, publish_body(ROOM, events)))

    await assert_sent(comm, publish_error("p1"))


# -- x-amz-content-sha256 (the Kotlin client's signer) ---------------------------------------------


async def test_a_declared_body_hash_is_used_when_it_is_the_operations_body(connected, credential):
    comm = await connected()
    body = subscribe_body(ROOM)
    declared = hashlib.sha256(body.encode()).hexdigest()

    authorization = sign(credential, body, extra_headers={"X-Amz-Content-SHA256": declared})
    await subscribe(comm, "s1", ROOM, authorization)

    await assert_sent(comm, {"type": "subscribe_success", "id": "s1"})


async def test_a_declared_body_hash_of_another_body_is_refused(connected, credential):
    # Correctly signed, but over the hash of a subscribe to another channel.
    comm = await connected()
    other = subscribe_body("/default/other")
    declared = hashlib.sha256(other.encode()).hexdigest()

    authorization = sign(credential, other, extra_headers={"X-Amz-Content-SHA256": declared})
    await subscribe(comm, "s1", ROOM, authorization)

    await assert_sent(comm, subscribe_error("s1"))


# -- HTTP publish ---------------------------------------------------------------------------------


def http_sign(credential: IamCredential, body: str, *, path: str = "/event", **kwargs: Any) -> dict[str, str]:
    """Sign the HTTP request itself, as botocore would send it to the test server."""
    kwargs.setdefault("host", HTTP_HOST)
    return sign(credential, body, url=f"http://{kwargs['host']}{path}", **kwargs)


async def http_publish(body: str, signed: dict[str, str], *, path: str = "/event") -> Any:
    """POST ``body`` with every signed header (the test client sends Host: testserver)."""
    headers = {name: value for name, value in signed.items() if name.lower() not in {"host", "content-type"}}
    return await AsyncClient().post(
        path, data=body.encode(), content_type=APPSYNC_HEADERS["content-type"], headers=headers
    )


async def test_a_signed_http_publish_is_delivered(connected, credential):
    subscriber = await connected()
    await subscribed_iam(subscriber, credential, "s1", ROOM)
    body = json.dumps({"channel": ROOM, "events": ['{"via":"http"}']})

    response = await http_publish(body, http_sign(credential, body))

    assert response.status_code == 200, response.content
    assert [entry["index"] for entry in response.json()["successful"]] == [0]
    assert response.json()["failed"] == []
    assert await subscriber.receive_json_from() == data("s1", '{"via":"http"}')


async def test_an_http_publish_verifies_the_signed_query_string(credential):
    body = publish_body(ROOM, ['{"n":1}'])

    signed = http_sign(credential, body, path="/event?b=2&a=x%2Fy")
    accepted = await http_publish(body, signed, path="/event?b=2&a=x%2Fy")
    refused = await http_publish(body, signed, path="/event?b=3&a=x%2Fy")

    assert accepted.status_code == 200, accepted.content
    assert refused.status_code == 401


def _http_wrong_host(credential: IamCredential, body: str) -> tuple[str, dict[str, str]]:
    return body, http_sign(credential, body, host="api.elsewhere.example")


def _http_tampered_body(credential: IamCredential, body: str) -> tuple[str, dict[str, str]]:
    tampered = body.replace("1", "2")
    assert tampered != body
    return tampered, http_sign(credential, body)


def _http_websocket_style(credential: IamCredential, body: str) -> tuple[str, dict[str, str]]:
    # Signed for the WebSocket host's /event, sent to another host: headers differ.
    return body, sign(credential, body)


@pytest.mark.parametrize(
    "make_request",
    [
        pytest.param(lambda c, b: (b, http_sign(c, b, secret="z" * 40)), id="wrong-secret"),
        pytest.param(lambda c, b: (b, http_sign(c, b, region="us-west-2")), id="wrong-region"),
        pytest.param(lambda c, b: (b, http_sign(c, b, service="execute-api")), id="wrong-service"),
        pytest.param(
            lambda c, b: (b, http_sign(c, b, at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=6))),
            id="stale-date",
        ),
        pytest.param(_http_tampered_body, id="tampered-body"),
        pytest.param(_http_wrong_host, id="signed-for-another-host"),
        pytest.param(_http_websocket_style, id="signed-for-another-host-websocket-style"),
    ],
)
async def test_an_http_publish_that_does_not_check_out_is_refused(connected, credential, make_request):
    subscriber = await connected()
    await subscribed_iam(subscriber, credential, "s1", ROOM)
    body, signed = make_request(credential, publish_body(ROOM, ['{"n":1}']))

    response = await http_publish(body, signed)

    assert response.status_code == 401
    assert response["x-amzn-ErrorType"] == "UnauthorizedException"
    assert response.json() == {"errors": [UNAUTHORIZED]}
    await assert_silent(subscriber)


async def test_an_http_publish_by_a_revoked_key_is_refused(credential):
    body = publish_body(ROOM, ['{"n":1}'])
    signed = http_sign(credential, body)
    assert (await http_publish(body, signed)).status_code == 200

    await sync_to_async(iamcredential_revoke)(access_key_id=credential.access_key_id)

    assert (await http_publish(body, signed)).status_code == 401


async def test_an_http_publish_outside_the_keys_namespaces_is_refused(default_namespace):
    credential = await sync_to_async(iamcredential_create)(publish_namespaces=["other"])
    body = publish_body(ROOM, ['{"n":1}'])

    response = await http_publish(body, http_sign(credential, body))

    assert response.status_code == 401


# -- the authorizer on its own ------------------------------------------------------------------


def websocket_request(operation: Operation, **kwargs: Any) -> AuthRequest:
    return AuthRequest(
        operation=operation,
        request=RequestInfo(transport=Transport.WEBSOCKET, source_ip="203.0.113.7"),
        **kwargs,
    )


def lowercased(authorization: dict[str, str]) -> dict[str, str]:
    return {name.lower(): value for name, value in authorization.items()}


@pytest.mark.parametrize(
    "credentials",
    [{}, {"x-api-key": "rt-abc"}, {"authorization": "Bearer eyJhbGciOi"}, {"authorization": "eyJ.x.y"}],
)
async def test_the_authorizer_abstains_without_a_sigv4_authorization(credentials):
    assert await IamAuthorizer().authenticate(credentials, websocket_request(Operation.CONNECT)) is None


async def test_a_malformed_sigv4_authorization_is_refused_not_abstained():
    credentials = {"authorization": "AWS4-HMAC-SHA256 Credential=nonsense", "x-amz-date": "20250101T000000Z"}

    with pytest.raises(Unauthorized):
        await IamAuthorizer().authenticate(credentials, websocket_request(Operation.CONNECT))


async def test_the_identity_is_the_iam_context_handlers_see(default_namespace):
    credential = await sync_to_async(iamcredential_create)(subscribe_namespaces=["*"])
    auth = websocket_request(Operation.SUBSCRIBE, namespace="default", channel=ROOM)

    identity = await IamAuthorizer().authenticate(lowercased(sign(credential, subscribe_body(ROOM))), auth)

    assert identity is not None and identity.mode == "IAM"
    assert identity.as_context() == {
        "accountId": "000000000000",
        "cognitoIdentityPoolId": None,
        "cognitoIdentityId": None,
        "sourceIp": ["203.0.113.7"],
        "username": credential.access_key_id,
        "userArn": f"arn:aws:iam::000000000000:user/{credential.access_key_id}",
        "cognitoIdentityAuthType": None,
        "cognitoIdentityAuthProvider": None,
    }


async def test_the_identity_uses_the_credentials_own_names(default_namespace):
    credential = await sync_to_async(iamcredential_create)(
        account_id="123456789012", username="AIDAEXAMPLE", user_arn="arn:aws:iam::123456789012:user/ops"
    )

    identity = await IamAuthorizer().authenticate(
        lowercased(sign(credential, "{}")), websocket_request(Operation.CONNECT)
    )

    assert identity is not None and identity.context is not None
    assert (identity.context["accountId"], identity.context["username"], identity.context["userArn"]) == (
        "123456789012",
        "AIDAEXAMPLE",
        "arn:aws:iam::123456789012:user/ops",
    )


async def test_revoking_a_cached_key_takes_effect_at_once_in_this_process(credential):
    authorizer = IamAuthorizer()
    credentials = lowercased(sign(credential, "{}"))
    assert await authorizer.authenticate(credentials, websocket_request(Operation.CONNECT)) is not None

    await sync_to_async(iamcredential_revoke)(access_key_id=credential.access_key_id)

    with pytest.raises(Unauthorized):
        await authorizer.authenticate(credentials, websocket_request(Operation.CONNECT))


# -- creating and revoking keys ----------------------------------------------------------------------


def test_created_keys_look_like_aws_keys(default_namespace):
    credential = iamcredential_create(publish_namespaces=["default", "*"])

    assert len(credential.access_key_id) == 20 and credential.access_key_id.startswith("AKIA")
    assert credential.access_key_id.isalnum() and credential.access_key_id.isupper()
    assert len(credential.secret_access_key) == 40
    assert iamcredential_create().access_key_id != credential.access_key_id


@pytest.mark.parametrize(
    "kwargs",
    [{"publish_namespaces": ["no spaces"]}, {"subscribe_namespaces": ["a/b"]}, {"account_id": "12"}],
)
def test_invalid_scopes_are_refused_at_creation(kwargs):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        iamcredential_create(**kwargs)


def test_the_command_creates_lists_and_revokes_keys(default_namespace):
    out, err = StringIO(), StringIO()
    call_command(
        "realtime_iam", "create", "--description", "ci", "--publish", "default", stdout=out, stderr=err
    )
    access_key_id, secret = out.getvalue().split()
    credential = IamCredential.objects.get(access_key_id=access_key_id)
    assert (credential.secret_access_key, credential.publish_namespaces) == (secret, ["default"])
    assert credential.subscribe_namespaces == [] and credential.can_connect

    listing = StringIO()
    call_command("realtime_iam", "list", stdout=listing)
    assert access_key_id in listing.getvalue() and secret not in listing.getvalue()

    call_command("realtime_iam", "revoke", access_key_id, stdout=StringIO())
    credential.refresh_from_db()
    assert credential.revoked_at is not None
    with pytest.raises(CommandError):
        call_command("realtime_iam", "revoke", access_key_id, stdout=StringIO())


def test_the_command_refuses_an_invalid_namespace(default_namespace):
    with pytest.raises(CommandError):
        call_command(
            "realtime_iam", "create", "--subscribe", "not valid", stdout=StringIO(), stderr=StringIO()
        )


def test_the_admin_creates_a_key_and_shows_its_secret_once(admin_client, default_namespace):
    response = admin_client.post(
        "/admin/realtime/iamcredential/add/",
        {
            "description": "from the admin",
            "can_connect": "on",
            "publish_namespaces": "default, chat",
            "subscribe_namespaces": "*",
            "account_id": "",
            "username": "",
            "user_arn": "",
        },
        follow=True,
    )

    assert response.status_code == 200
    credential = IamCredential.objects.get(description="from the admin")
    assert (credential.publish_namespaces, credential.subscribe_namespaces) == (["default", "chat"], ["*"])
    messages = [str(message) for message in response.context["messages"]]
    assert any(credential.secret_access_key in message for message in messages)
    change_page = admin_client.get(f"/admin/realtime/iamcredential/{credential.pk}/change/")
    assert credential.secret_access_key not in change_page.content.decode()
