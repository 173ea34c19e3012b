"""Client frame parsing and server frame building (realtime/core/protocol.py, PROTOCOL §3, §11)."""

from __future__ import annotations

import json

import pytest

from realtime.core import protocol
from realtime.core.protocol import (
    DATA_FRAME_SUFFIX,
    ClientType,
    ConnectionInit,
    Publish,
    ServerType,
    Subscribe,
    Unsubscribe,
)
from realtime.exceptions import (
    InvalidOperationId,
    MalformedMessage,
    RealtimeError,
    Transport,
    Unauthorized,
    UnsupportedOperation,
)

UUID = "ee849ef0-cf23-4cb8-9fcb-152ae4fd1e69"
ID_128 = "a" * 128
ID_129 = "a" * 129
ID_256 = "b" * 256
ID_257 = "b" * 257

SUBSCRIBE = ClientType.SUBSCRIBE
UNSUBSCRIBE = ClientType.UNSUBSCRIBE
PUBLISH = ClientType.PUBLISH


def frame(**fields) -> str:
    return json.dumps(fields)


def compact(value) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------------------
# Well-formed client frames


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param('{"type":"connection_init"}', ConnectionInit(), id="connection_init"),
        pytest.param(
            ' \n{ "type" : "connection_init" }\n', ConnectionInit(), id="connection_init-with-whitespace"
        ),
        pytest.param(
            frame(type="connection_init", id="not an id!", payload={}),
            ConnectionInit(),
            id="connection_init-ignores-id-and-payload",
        ),
        pytest.param(
            frame(type="subscribe", id=UUID, channel="/default/*"),
            Subscribe(UUID, "/default/*", None),
            id="subscribe-without-authorization",
        ),
        pytest.param(
            frame(type="subscribe", id=UUID, channel="/default/*", authorization=None),
            Subscribe(UUID, "/default/*", None),
            id="subscribe-with-null-authorization",
        ),
        pytest.param(
            frame(type="subscribe", id=UUID, channel="/default/a", authorization={}),
            Subscribe(UUID, "/default/a", {}),
            id="subscribe-with-empty-authorization",
        ),
        pytest.param(
            frame(
                type="subscribe",
                id=UUID.upper(),
                channel="/default/a",
                authorization={"x-api-key": "da2-key", "host": "example.com"},
            ),
            Subscribe(UUID.upper(), "/default/a", {"x-api-key": "da2-key", "host": "example.com"}),
            id="subscribe-swift-uppercase-uuid",
        ),
        pytest.param(
            frame(
                type="subscribe",
                id=UUID,
                channel="/default/a",
                authorization={"x-api-key": "da2-key"},
                payload={
                    "channel": "/default/a",
                    "extensions": {"authorization": {"x-api-key": "da2-key"}},
                },
            ),
            Subscribe(UUID, "/default/a", {"x-api-key": "da2-key"}),
            id="subscribe-amplify-legacy-payload-ignored",
        ),
        pytest.param(
            frame(type="subscribe", id=UUID, channel="not a channel"),
            Subscribe(UUID, "not a channel", None),
            id="subscribe-channel-grammar-is-checked-later",
        ),
        pytest.param(
            frame(type="unsubscribe", id=UUID),
            Unsubscribe(UUID),
            id="unsubscribe",
        ),
        pytest.param(
            frame(type="unsubscribe", id=UUID, channel=5, authorization="x"),
            Unsubscribe(UUID),
            id="unsubscribe-ignores-other-fields",
        ),
        pytest.param(
            frame(
                type="publish",
                id="p-1",
                channel="/default/a",
                events=['{"msg":"Hello World!"}', "1"],
                authorization={"x-api-key": "da2-key"},
            ),
            Publish("p-1", "/default/a", ('{"msg":"Hello World!"}', "1"), {"x-api-key": "da2-key"}),
            id="publish",
        ),
        pytest.param(
            frame(
                type="publish",
                id="p-1",
                channel="/default/a",
                events=['"e"'],
                payload={"channel": "/default/a", "events": ['"e"']},
            ),
            Publish("p-1", "/default/a", ('"e"',), None),
            id="publish-amplify-legacy-payload-ignored",
        ),
        pytest.param(
            frame(type="publish", id="p-1", channel="/default/a", events=[]),
            Publish("p-1", "/default/a", (), None),
            id="publish-empty-events-is-checked-later",
        ),
        pytest.param(
            frame(type="publish", id="p-1", channel="/default/a", events=[1, {"a": 1}, None, ["x"]]),
            Publish("p-1", "/default/a", (1, {"a": 1}, None, ["x"]), None),
            id="publish-non-string-events-are-checked-later",
        ),
        pytest.param(frame(type="unsubscribe", id="a"), Unsubscribe("a"), id="one-char-id"),
        pytest.param(frame(type="unsubscribe", id=ID_128), Unsubscribe(ID_128), id="128-char-id"),
        pytest.param(
            frame(type="unsubscribe", id="aZ09-_+"), Unsubscribe("aZ09-_+"), id="id-with-every-symbol"
        ),
    ],
)
def test_a_well_formed_client_frame_parses_into_its_message(text, expected):
    assert protocol.parse(text) == expected


@pytest.mark.parametrize(
    ("authorization", "expected"),
    [
        pytest.param(
            {"Authorization": "token", "X-Amz-Date": "20250101T000000Z", "X-Api-Key": "da2-key"},
            {"authorization": "token", "x-amz-date": "20250101T000000Z", "x-api-key": "da2-key"},
            id="keys-lowercased",
        ),
        pytest.param(
            {"X-Amz-Security-Token": "t", "host": "example.com"},
            {"x-amz-security-token": "t", "host": "example.com"},
            id="mixed-case-and-lowercase",
        ),
        pytest.param(
            {"x-api-key": "k", "n": 1, "f": 1.5, "b": True, "z": None, "o": {"a": "b"}, "l": ["a"]},
            {"x-api-key": "k"},
            id="non-string-values-dropped",
        ),
        pytest.param(
            {"x-api-key": "k", "x-amz-user-agent": "aws-amplify/6", "x-custom": "c"},
            {"x-api-key": "k", "x-amz-user-agent": "aws-amplify/6", "x-custom": "c"},
            id="unknown-keys-kept-for-the-authorizer-to-ignore",
        ),
        pytest.param({}, {}, id="empty"),
    ],
)
def test_authorization_keys_are_lowercased_and_non_string_values_dropped(authorization, expected):
    message = protocol.parse(frame(type="subscribe", id="s", channel="/a", authorization=authorization))
    assert message == Subscribe("s", "/a", expected)
    message = protocol.parse(
        frame(type="publish", id="p", channel="/a", events=[], authorization=authorization)
    )
    assert message == Publish("p", "/a", (), expected)


# ---------------------------------------------------------------------------
# Malformed client frames


NOT_JSON = "Message is not valid JSON"
NOT_OBJECT = "Message must be a JSON object"
NO_TYPE = "Message must have a string type"
UNSUPPORTED = "WebSocket did not understand the operation"
BINARY = "Binary frames are not supported"
BAD_ID = "Invalid operation id"
ID_NOT_STRING = "id must be a string"
CHANNEL_NOT_STRING = "channel must be a string"
EVENTS_NOT_ARRAY = "events must be an array"
AUTHORIZATION_NOT_OBJECT = "authorization must be an object"


@pytest.mark.parametrize(
    ("text", "error_class", "message", "operation", "op_id"),
    [
        # Not a JSON object at all: nothing can be bound.
        pytest.param(None, MalformedMessage, BINARY, None, None, id="none"),
        pytest.param(b'{"type":"connection_init"}', MalformedMessage, BINARY, None, None, id="binary"),
        pytest.param(b"", MalformedMessage, BINARY, None, None, id="empty-binary"),
        pytest.param("", MalformedMessage, NOT_JSON, None, None, id="empty-text"),
        pytest.param("not json", MalformedMessage, NOT_JSON, None, None, id="not-json"),
        pytest.param('{"type":"subscribe"', MalformedMessage, NOT_JSON, None, None, id="truncated"),
        pytest.param("{'type':'subscribe'}", MalformedMessage, NOT_JSON, None, None, id="single-quotes"),
        pytest.param('{"type":"ka"} {}', MalformedMessage, NOT_JSON, None, None, id="two-documents"),
        pytest.param("[" * 100_000, MalformedMessage, NOT_JSON, None, None, id="deeply-nested"),
        pytest.param("[]", MalformedMessage, NOT_OBJECT, None, None, id="array"),
        pytest.param(
            '[{"type":"connection_init"}]', MalformedMessage, NOT_OBJECT, None, None, id="array-of-frame"
        ),
        pytest.param('"connection_init"', MalformedMessage, NOT_OBJECT, None, None, id="string"),
        pytest.param("42", MalformedMessage, NOT_OBJECT, None, None, id="number"),
        pytest.param("null", MalformedMessage, NOT_OBJECT, None, None, id="null"),
        pytest.param("true", MalformedMessage, NOT_OBJECT, None, None, id="boolean"),
        # No usable type: the id is echoed when it is a short string.
        pytest.param("{}", MalformedMessage, NO_TYPE, None, None, id="empty-object"),
        pytest.param(frame(id="x"), MalformedMessage, NO_TYPE, None, "x", id="missing-type"),
        pytest.param(frame(type=None, id="x"), MalformedMessage, NO_TYPE, None, "x", id="null-type"),
        pytest.param(frame(type=1, id="x"), MalformedMessage, NO_TYPE, None, "x", id="number-type"),
        pytest.param(
            frame(type=["subscribe"], id="x"), MalformedMessage, NO_TYPE, None, "x", id="array-type"
        ),
        pytest.param(frame(type=1, id=5), MalformedMessage, NO_TYPE, None, None, id="number-type-number-id"),
        pytest.param(
            frame(type="nope", id="x"), UnsupportedOperation, UNSUPPORTED, None, "x", id="unknown-type"
        ),
        pytest.param(frame(type=""), UnsupportedOperation, UNSUPPORTED, None, None, id="empty-type"),
        pytest.param(
            frame(type="Subscribe", id="x"), UnsupportedOperation, UNSUPPORTED, None, "x", id="type-case"
        ),
        pytest.param(frame(type="ka"), UnsupportedOperation, UNSUPPORTED, None, None, id="server-type-ka"),
        pytest.param(
            frame(type="subscribe_success", id="x"),
            UnsupportedOperation,
            UNSUPPORTED,
            None,
            "x",
            id="server-type-subscribe_success",
        ),
        pytest.param(
            frame(type="start", id="x", payload={}),
            UnsupportedOperation,
            UNSUPPORTED,
            None,
            "x",
            id="graphql-start",
        ),
        pytest.param(
            frame(type="nope", id=ID_257),
            UnsupportedOperation,
            UNSUPPORTED,
            None,
            None,
            id="unknown-type-long-id",
        ),
        # Ids.
        pytest.param(
            frame(type="subscribe", channel="/a"),
            MalformedMessage,
            ID_NOT_STRING,
            SUBSCRIBE,
            None,
            id="subscribe-missing-id",
        ),
        pytest.param(
            frame(type="subscribe", id=None, channel="/a"),
            MalformedMessage,
            ID_NOT_STRING,
            SUBSCRIBE,
            None,
            id="subscribe-null-id",
        ),
        pytest.param(
            frame(type="subscribe", id=5, channel="/a"),
            MalformedMessage,
            ID_NOT_STRING,
            SUBSCRIBE,
            None,
            id="subscribe-number-id",
        ),
        pytest.param(
            frame(type="unsubscribe"),
            MalformedMessage,
            ID_NOT_STRING,
            UNSUBSCRIBE,
            None,
            id="unsubscribe-missing-id",
        ),
        pytest.param(
            frame(type="unsubscribe", id=["a"]),
            MalformedMessage,
            ID_NOT_STRING,
            UNSUBSCRIBE,
            None,
            id="unsubscribe-array-id",
        ),
        pytest.param(
            frame(type="publish", channel="/a", events=[]),
            MalformedMessage,
            ID_NOT_STRING,
            PUBLISH,
            None,
            id="publish-missing-id",
        ),
        pytest.param(
            frame(type="subscribe", id="", channel="/a"),
            InvalidOperationId,
            BAD_ID,
            SUBSCRIBE,
            "",
            id="empty-id",
        ),
        pytest.param(
            frame(type="subscribe", id=ID_129, channel="/a"),
            InvalidOperationId,
            BAD_ID,
            SUBSCRIBE,
            ID_129,
            id="129-char-id-echoed",
        ),
        pytest.param(
            frame(type="subscribe", id=ID_256, channel="/a"),
            InvalidOperationId,
            BAD_ID,
            SUBSCRIBE,
            ID_256,
            id="256-char-id-echoed",
        ),
        pytest.param(
            frame(type="subscribe", id=ID_257, channel="/a"),
            InvalidOperationId,
            BAD_ID,
            SUBSCRIBE,
            None,
            id="257-char-id-not-echoed",
        ),
        pytest.param(
            frame(type="subscribe", id="a b", channel="/a"),
            InvalidOperationId,
            BAD_ID,
            SUBSCRIBE,
            "a b",
            id="id-with-space",
        ),
        pytest.param(
            frame(type="unsubscribe", id="a/b"),
            InvalidOperationId,
            BAD_ID,
            UNSUBSCRIBE,
            "a/b",
            id="id-with-slash",
        ),
        pytest.param(
            frame(type="unsubscribe", id="a.b"),
            InvalidOperationId,
            BAD_ID,
            UNSUBSCRIBE,
            "a.b",
            id="id-with-dot",
        ),
        pytest.param(
            frame(type="unsubscribe", id="a\n"),
            InvalidOperationId,
            BAD_ID,
            UNSUBSCRIBE,
            "a\n",
            id="id-with-trailing-newline",
        ),
        pytest.param(
            frame(type="publish", id="caf\u00e9", channel="/a", events=[]),
            InvalidOperationId,
            BAD_ID,
            PUBLISH,
            "caf\u00e9",
            id="id-with-unicode-letter",
        ),
        pytest.param(
            frame(type="publish", id="\u0661", channel="/a", events=[]),
            InvalidOperationId,
            BAD_ID,
            PUBLISH,
            "\u0661",
            id="id-with-unicode-digit",
        ),
        pytest.param(
            frame(type="publish", id='a"b', channel="/a", events=[]),
            InvalidOperationId,
            BAD_ID,
            PUBLISH,
            'a"b',
            id="id-with-quote",
        ),
        # Channel.
        pytest.param(
            frame(type="subscribe", id="s"),
            MalformedMessage,
            CHANNEL_NOT_STRING,
            SUBSCRIBE,
            "s",
            id="subscribe-missing-channel",
        ),
        pytest.param(
            frame(type="subscribe", id="s", channel=None),
            MalformedMessage,
            CHANNEL_NOT_STRING,
            SUBSCRIBE,
            "s",
            id="subscribe-null-channel",
        ),
        pytest.param(
            frame(type="subscribe", id="s", channel=["default"]),
            MalformedMessage,
            CHANNEL_NOT_STRING,
            SUBSCRIBE,
            "s",
            id="subscribe-array-channel",
        ),
        pytest.param(
            frame(type="publish", id="p", events=[]),
            MalformedMessage,
            CHANNEL_NOT_STRING,
            PUBLISH,
            "p",
            id="publish-missing-channel",
        ),
        pytest.param(
            frame(type="publish", id="p", channel=7, events=[]),
            MalformedMessage,
            CHANNEL_NOT_STRING,
            PUBLISH,
            "p",
            id="publish-number-channel",
        ),
        # Events.
        pytest.param(
            frame(type="publish", id="p", channel="/a"),
            MalformedMessage,
            EVENTS_NOT_ARRAY,
            PUBLISH,
            "p",
            id="publish-missing-events",
        ),
        pytest.param(
            frame(type="publish", id="p", channel="/a", events=None),
            MalformedMessage,
            EVENTS_NOT_ARRAY,
            PUBLISH,
            "p",
            id="publish-null-events",
        ),
        pytest.param(
            frame(type="publish", id="p", channel="/a", events='{"a":1}'),
            MalformedMessage,
            EVENTS_NOT_ARRAY,
            PUBLISH,
            "p",
            id="publish-string-events",
        ),
        pytest.param(
            frame(type="publish", id="p", channel="/a", events={"0": "e"}),
            MalformedMessage,
            EVENTS_NOT_ARRAY,
            PUBLISH,
            "p",
            id="publish-object-events",
        ),
        # Authorization.
        pytest.param(
            frame(type="subscribe", id="s", channel="/a", authorization="da2-key"),
            MalformedMessage,
            AUTHORIZATION_NOT_OBJECT,
            SUBSCRIBE,
            "s",
            id="subscribe-string-authorization",
        ),
        pytest.param(
            frame(type="subscribe", id="s", channel="/a", authorization=[["x-api-key", "k"]]),
            MalformedMessage,
            AUTHORIZATION_NOT_OBJECT,
            SUBSCRIBE,
            "s",
            id="subscribe-array-authorization",
        ),
        pytest.param(
            frame(type="publish", id="p", channel="/a", events=[], authorization=1),
            MalformedMessage,
            AUTHORIZATION_NOT_OBJECT,
            PUBLISH,
            "p",
            id="publish-number-authorization",
        ),
    ],
)
def test_a_malformed_client_frame_raises_an_error_bound_to_what_could_be_read(
    text, error_class, message, operation, op_id
):
    with pytest.raises(RealtimeError) as caught:
        protocol.parse(text)
    error = caught.value
    assert type(error) is error_class
    assert error.message == message
    assert protocol.error_operation(error) == (operation, op_id)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            frame(type="subscribe", id="\ud800", channel="/a"),
            {"type": "error", "errors": [{"errorType": "BadRequestException", "message": BAD_ID}]},
            id="lone-high-surrogate",
        ),
        pytest.param(
            frame(type="unsubscribe", id="a\udfff"),
            {"type": "error", "errors": [{"errorType": "BadRequestException", "message": BAD_ID}]},
            id="lone-low-surrogate",
        ),
        pytest.param(
            frame(type="nope", id="\udc80"),
            {"type": "error", "errors": [{"errorType": "UnsupportedOperation", "message": UNSUPPORTED}]},
            id="unknown-type",
        ),
        pytest.param(
            frame(type=1, id="\ud83d"),
            {"type": "error", "errors": [{"errorType": "BadRequestException", "message": NO_TYPE}]},
            id="no-type",
        ),
    ],
)
def test_an_id_that_utf8_cannot_carry_is_not_echoed_so_the_error_frame_stays_sendable(text, expected):
    with pytest.raises(RealtimeError) as caught:
        protocol.parse(text)
    operation, op_id = protocol.error_operation(caught.value)
    assert op_id is None
    kind = protocol.ERROR_REPLY.get(operation, ServerType.ERROR) if op_id is not None else ServerType.ERROR
    reply = protocol.error_frame(kind, op_id, [caught.value.to_error(Transport.WEBSOCKET)])
    assert json.loads(reply.encode("utf-8")) == expected


def test_an_error_never_bound_to_an_operation_reports_none():
    assert protocol.error_operation(MalformedMessage()) == (None, None)
    assert protocol.error_operation(ValueError("x")) == (None, None)


def test_bind_operation_returns_the_same_error_with_the_operation_attached():
    error = MalformedMessage("m")
    assert protocol.bind_operation(error, PUBLISH, "p-1") is error
    assert protocol.error_operation(error) == (PUBLISH, "p-1")


def test_each_operation_is_answered_by_its_own_error_frame():
    assert protocol.ERROR_REPLY == {
        ClientType.SUBSCRIBE: ServerType.SUBSCRIBE_ERROR,
        ClientType.UNSUBSCRIBE: ServerType.UNSUBSCRIBE_ERROR,
        ClientType.PUBLISH: ServerType.PUBLISH_ERROR,
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ({}, {}),
        ({"X-Api-Key": "k"}, {"x-api-key": "k"}),
        ({"a": 1, "B": "b"}, {"b": "b"}),
    ],
)
def test_parse_authorization_lowercases_keys_and_keeps_only_strings(text, expected):
    assert protocol.parse_authorization(text) == expected


@pytest.mark.parametrize("raw", ["k", 1, [], ["x-api-key"], True])
def test_parse_authorization_refuses_anything_but_an_object(raw):
    with pytest.raises(MalformedMessage, match="^authorization must be an object$"):
        protocol.parse_authorization(raw)


# ---------------------------------------------------------------------------
# Server frames


UNAUTHORIZED_WITH_CODE = {
    "errorType": "UnauthorizedException",
    "errorCode": 401,
    "message": "You are not authorized to make this call.",
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            protocol.connection_ack(300000),
            {
                "type": "connection_ack",
                "connectionTimeoutMs": 300000,
                "payload": {"connectionTimeoutMs": 300000},
            },
            id="connection_ack",
        ),
        pytest.param(
            protocol.connection_ack(1234),
            {"type": "connection_ack", "connectionTimeoutMs": 1234, "payload": {"connectionTimeoutMs": 1234}},
            id="connection_ack-custom-timeout",
        ),
        pytest.param(protocol.KEEPALIVE, {"type": "ka"}, id="ka"),
        pytest.param(
            protocol.connection_error([Unauthorized().to_error(Transport.WEBSOCKET, with_code=True)]),
            {"type": "connection_error", "errors": [UNAUTHORIZED_WITH_CODE]},
            id="connection_error",
        ),
        pytest.param(
            protocol.success(ServerType.SUBSCRIBE_SUCCESS, UUID),
            {"type": "subscribe_success", "id": UUID},
            id="subscribe_success",
        ),
        pytest.param(
            protocol.success(ServerType.UNSUBSCRIBE_SUCCESS, UUID),
            {"type": "unsubscribe_success", "id": UUID},
            id="unsubscribe_success",
        ),
        pytest.param(
            protocol.publish_success(
                "p-1",
                [{"identifier": "221b6b3f", "index": 0}],
                [{"code": "BadRequestException", "identifier": "x", "index": 1, "message": "m"}],
            ),
            {
                "type": "publish_success",
                "id": "p-1",
                "successful": [{"identifier": "221b6b3f", "index": 0}],
                "failed": [{"code": "BadRequestException", "identifier": "x", "index": 1, "message": "m"}],
            },
            id="publish_success",
        ),
        pytest.param(
            protocol.publish_success("p-1", [], []),
            {"type": "publish_success", "id": "p-1", "successful": [], "failed": []},
            id="publish_success-keeps-empty-lists",
        ),
        pytest.param(
            protocol.error_frame(
                ServerType.SUBSCRIBE_ERROR,
                UUID,
                [
                    {
                        "errorType": "UnauthorizedException",
                        "message": "You are not authorized to make this call.",
                    }
                ],
            ),
            {
                "type": "subscribe_error",
                "id": UUID,
                "errors": [
                    {
                        "errorType": "UnauthorizedException",
                        "message": "You are not authorized to make this call.",
                    }
                ],
            },
            id="subscribe_error",
        ),
        pytest.param(
            protocol.error_frame(ServerType.PUBLISH_ERROR, "p-1", [{"errorType": "UnauthorizedException"}]),
            {"type": "publish_error", "id": "p-1", "errors": [{"errorType": "UnauthorizedException"}]},
            id="publish_error-without-message",
        ),
        pytest.param(
            protocol.error_frame(
                ServerType.ERROR,
                None,
                [{"errorType": "BadRequestException", "message": "Message is not valid JSON"}],
            ),
            {
                "type": "error",
                "errors": [{"errorType": "BadRequestException", "message": "Message is not valid JSON"}],
            },
            id="error-without-id",
        ),
        pytest.param(
            protocol.error_frame(
                ServerType.ERROR, "x", [{"errorType": "UnsupportedOperation", "message": "m"}]
            ),
            {"type": "error", "id": "x", "errors": [{"errorType": "UnsupportedOperation", "message": "m"}]},
            id="error-with-id",
        ),
    ],
)
def test_a_server_frame_is_compact_json_holding_exactly_its_fields(text, expected):
    assert json.loads(text) == expected
    assert text == compact(expected)


def test_server_frames_do_not_escape_non_ascii_text():
    text = protocol.error_frame(ServerType.ERROR, None, [{"errorType": "E", "message": "caf\u00e9 \u2603"}])
    assert text == '{"type":"error","errors":[{"errorType":"E","message":"caf\u00e9 \u2603"}]}'


@pytest.mark.parametrize(
    "event",
    [
        pytest.param('{"message":"Hello world!"}', id="object"),
        pytest.param('"my event content"', id="string"),
        pytest.param("42", id="number"),
        pytest.param('["a",1,null]', id="array"),
        pytest.param("", id="empty"),
        pytest.param('{"q":"say \\"hi\\""}', id="escaped-quotes"),
        pytest.param('a"b', id="bare-quote"),
        pytest.param("back\\slash", id="backslash"),
        pytest.param("C:\\\\path\\\\", id="trailing-backslashes"),
        pytest.param('{"t":"caf\u00e9 \u2603 \U0001f389"}', id="unicode"),
        pytest.param("\u2028\u2029", id="line-separators"),
        pytest.param("\x00\x01\x1f\x7f", id="control-characters"),
        pytest.param("line\nbreak\ttab\r", id="whitespace-escapes"),
        pytest.param("</script><!--", id="html"),
        pytest.param('"}', id="frame-closer"),
    ],
)
@pytest.mark.parametrize("subscription_id", [UUID, UUID.upper(), "a+b_c-d", ID_128])
def test_a_data_frame_is_the_prefix_the_encoded_event_and_the_suffix(subscription_id, event):
    text = protocol.data_frame_prefix(subscription_id) + protocol.encode_event(event) + DATA_FRAME_SUFFIX
    assert json.loads(text) == {"type": "data", "id": subscription_id, "event": event}
    assert text == compact({"type": "data", "id": subscription_id, "event": event})


@pytest.mark.parametrize(
    ("event", "encoded"),
    [
        ("plain", '"plain"'),
        ('"', '"\\""'),
        ("\\", '"\\\\"'),
        ("caf\u00e9", '"caf\u00e9"'),
        ("\n", '"\\n"'),
    ],
)
def test_encode_event_is_the_json_string_literal_without_ascii_escaping(event, encoded):
    assert protocol.encode_event(event) == encoded


def test_the_enums_carry_the_wire_type_names():
    assert [t.value for t in ClientType] == ["connection_init", "subscribe", "unsubscribe", "publish"]
    assert [t.value for t in ServerType] == [
        "connection_ack",
        "connection_error",
        "ka",
        "subscribe_success",
        "subscribe_error",
        "unsubscribe_success",
        "unsubscribe_error",
        "publish_success",
        "publish_error",
        "data",
        "broadcast_error",
        "error",
    ]
    assert (
        protocol.CloseCode.NORMAL,
        protocol.CloseCode.SLOW_CONSUMER,
        protocol.CloseCode.TRY_AGAIN_LATER,
    ) == (
        1000,
        1008,
        1013,
    )
