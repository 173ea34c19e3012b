"""The error tree and its wire forms (realtime/exceptions.py, PROTOCOL §2.3, §3)."""

from __future__ import annotations

import pytest

from realtime import exceptions
from realtime.exceptions import (
    BadRequest,
    DuplicateOperation,
    HandlerRejected,
    InvalidChannel,
    InvalidOperationId,
    LimitExceeded,
    MalformedMessage,
    MaxSubscriptionsReached,
    NamespaceNotFound,
    NoEvents,
    RealtimeError,
    ServiceUnavailable,
    TooManyEvents,
    Transport,
    Unauthorized,
    UnknownOperation,
    UnsupportedOperation,
)

HTTP = Transport.HTTP
WEBSOCKET = Transport.WEBSOCKET
SERVER = Transport.SERVER
NOT_AUTHORIZED = "You are not authorized to make this call."


@pytest.mark.parametrize(
    ("error", "transport", "expected"),
    [
        pytest.param(
            RealtimeError(),
            HTTP,
            {"errorType": "InternalFailure", "message": "An internal error occurred."},
            id="root",
        ),
        pytest.param(
            BadRequest(),
            HTTP,
            {"errorType": "BadRequestException", "message": "The request is not valid."},
            id="bad-request",
        ),
        pytest.param(
            InvalidChannel(),
            HTTP,
            {"errorType": "BadRequestException", "message": "Invalid Channel Format"},
            id="channel-http",
        ),
        pytest.param(
            InvalidChannel(),
            WEBSOCKET,
            {"errorType": "BadRequestException", "message": "Invalid Channel Format"},
            id="channel-websocket",
        ),
        pytest.param(
            InvalidOperationId(),
            WEBSOCKET,
            {"errorType": "BadRequestException", "message": "Invalid operation id"},
            id="operation-id",
        ),
        pytest.param(
            TooManyEvents(5),
            HTTP,
            {"errorType": "BadRequestException", "message": "Input exceeded 5 event limit"},
            id="too-many-events-http",
        ),
        pytest.param(
            TooManyEvents(5),
            SERVER,
            {"errorType": "BadRequestException", "message": "Input exceeded 5 event limit"},
            id="too-many-events-server",
        ),
        pytest.param(
            TooManyEvents(5),
            WEBSOCKET,
            {"errorType": "InvalidInputError", "message": "input exceeded 5 event limit"},
            id="too-many-events-websocket",
        ),
        pytest.param(
            TooManyEvents(10),
            WEBSOCKET,
            {"errorType": "InvalidInputError", "message": "input exceeded 10 event limit"},
            id="too-many-events-websocket-other-limit",
        ),
        pytest.param(
            NoEvents(),
            HTTP,
            {"errorType": "BadRequestException", "message": "Input must contain at least 1 event"},
            id="no-events",
        ),
        pytest.param(
            MalformedMessage(),
            WEBSOCKET,
            {"errorType": "BadRequestException", "message": "The message is not valid."},
            id="malformed-default",
        ),
        pytest.param(
            MalformedMessage("Message is not valid JSON"),
            WEBSOCKET,
            {"errorType": "BadRequestException", "message": "Message is not valid JSON"},
            id="malformed-custom",
        ),
        pytest.param(
            UnsupportedOperation(),
            WEBSOCKET,
            {"errorType": "UnsupportedOperation", "message": "WebSocket did not understand the operation"},
            id="unsupported",
        ),
        pytest.param(
            Unauthorized(),
            HTTP,
            {"errorType": "UnauthorizedException", "message": NOT_AUTHORIZED},
            id="unauthorized",
        ),
        pytest.param(NamespaceNotFound(), HTTP, {"errorType": "UnauthorizedException"}, id="namespace-http"),
        pytest.param(
            NamespaceNotFound(), WEBSOCKET, {"errorType": "UnauthorizedException"}, id="namespace-websocket"
        ),
        pytest.param(
            HandlerRejected(),
            HTTP,
            {"errorType": "BadRequestException", "message": "The request was rejected by an event handler."},
            id="handler-rejected",
        ),
        pytest.param(
            HandlerRejected("not today"),
            WEBSOCKET,
            {"errorType": "BadRequestException", "message": "not today"},
            id="handler-rejected-with-message",
        ),
        pytest.param(
            MaxSubscriptionsReached(),
            WEBSOCKET,
            {"errorType": "MaxSubscriptionsReachedError", "message": "Max number of subscriptions reached"},
            id="max-subscriptions",
        ),
        pytest.param(
            DuplicateOperation(),
            WEBSOCKET,
            {
                "errorType": "DuplicatedOperationError",
                "message": "Another operation with this id is already in progress",
            },
            id="duplicate",
        ),
        pytest.param(
            UnknownOperation("sub-1"),
            WEBSOCKET,
            {"errorType": "UnknownOperationError", "message": "Unknown operation id sub-1"},
            id="unknown-operation",
        ),
        pytest.param(
            LimitExceeded(),
            WEBSOCKET,
            {"errorType": "LimitExceededError", "message": "Rate limit exceeded"},
            id="limit",
        ),
        pytest.param(
            ServiceUnavailable(),
            HTTP,
            {
                "errorType": "ServiceUnavailable",
                "message": "The service is temporarily unavailable, try again.",
            },
            id="unavailable",
        ),
    ],
)
def test_an_error_has_one_wire_form_per_transport(error, transport, expected):
    result = error.to_error(transport)
    assert result == expected
    assert list(result) == list(expected)


@pytest.mark.parametrize(
    ("error", "transport", "expected"),
    [
        pytest.param(
            Unauthorized(),
            WEBSOCKET,
            {"errorType": "UnauthorizedException", "errorCode": 401, "message": NOT_AUTHORIZED},
            id="unauthorized",
        ),
        pytest.param(
            NamespaceNotFound(),
            WEBSOCKET,
            {"errorType": "UnauthorizedException", "errorCode": 401},
            id="namespace",
        ),
        pytest.param(
            TooManyEvents(5),
            WEBSOCKET,
            {"errorType": "InvalidInputError", "errorCode": 400, "message": "input exceeded 5 event limit"},
            id="too-many-events-websocket",
        ),
        pytest.param(
            TooManyEvents(5),
            HTTP,
            {"errorType": "BadRequestException", "errorCode": 400, "message": "Input exceeded 5 event limit"},
            id="too-many-events-http",
        ),
        pytest.param(
            HandlerRejected(),
            WEBSOCKET,
            {
                "errorType": "BadRequestException",
                "errorCode": 403,
                "message": "The request was rejected by an event handler.",
            },
            id="handler-rejected",
        ),
        pytest.param(
            LimitExceeded(),
            WEBSOCKET,
            {"errorType": "LimitExceededError", "errorCode": 429, "message": "Rate limit exceeded"},
            id="limit",
        ),
        pytest.param(
            ServiceUnavailable(),
            WEBSOCKET,
            {
                "errorType": "ServiceUnavailable",
                "errorCode": 503,
                "message": "The service is temporarily unavailable, try again.",
            },
            id="unavailable",
        ),
        pytest.param(
            RealtimeError(),
            WEBSOCKET,
            {"errorType": "InternalFailure", "errorCode": 500, "message": "An internal error occurred."},
            id="root",
        ),
    ],
)
def test_with_code_adds_the_numeric_error_code_between_type_and_message(error, transport, expected):
    result = error.to_error(transport, with_code=True)
    assert result == expected
    assert list(result) == list(expected)


@pytest.mark.parametrize(
    ("error_class", "http_status", "error_code"),
    [
        (RealtimeError, 500, 500),
        (BadRequest, 400, 400),
        (InvalidChannel, 400, 400),
        (InvalidOperationId, 400, 400),
        (NoEvents, 400, 400),
        (MalformedMessage, 400, 400),
        (UnsupportedOperation, 400, 400),
        (Unauthorized, 401, 401),
        (NamespaceNotFound, 401, 401),
        (HandlerRejected, 403, 403),
        (MaxSubscriptionsReached, 400, 400),
        (DuplicateOperation, 400, 400),
        (UnknownOperation, 400, 400),
        (LimitExceeded, 429, 429),
        (ServiceUnavailable, 503, 503),
    ],
)
def test_each_error_class_carries_its_http_status_and_error_code(error_class, http_status, error_code):
    assert (error_class.http_status, error_class.error_code) == (http_status, error_code)


@pytest.mark.parametrize(
    ("error_class", "parent"),
    [
        (BadRequest, RealtimeError),
        (InvalidChannel, BadRequest),
        (InvalidOperationId, BadRequest),
        (TooManyEvents, BadRequest),
        (NoEvents, BadRequest),
        (MalformedMessage, BadRequest),
        (UnsupportedOperation, MalformedMessage),
        (Unauthorized, RealtimeError),
        (NamespaceNotFound, Unauthorized),
        (HandlerRejected, RealtimeError),
        (MaxSubscriptionsReached, RealtimeError),
        (DuplicateOperation, RealtimeError),
        (UnknownOperation, RealtimeError),
        (LimitExceeded, RealtimeError),
        (ServiceUnavailable, RealtimeError),
    ],
)
def test_the_error_tree_has_the_documented_shape(error_class, parent):
    assert error_class.__mro__[1] is parent


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (InvalidChannel(), "Invalid Channel Format"),
        (MalformedMessage("custom"), "custom"),
        (TooManyEvents(5), "Input exceeded 5 event limit"),
        (UnknownOperation("x"), "Unknown operation id x"),
        (NamespaceNotFound(), "UnauthorizedException"),
    ],
)
def test_an_error_reads_as_its_message_or_else_its_type(error, text):
    assert str(error) == text


def test_too_many_events_keeps_its_limit():
    assert TooManyEvents(7).limit == 7


def _all_error_classes(root=RealtimeError):
    for subclass in root.__subclasses__():
        yield subclass
        yield from _all_error_classes(subclass)


@pytest.mark.parametrize("transport", list(Transport))
def test_every_error_in_the_module_builds_a_wire_entry_with_a_string_type(transport):
    module_classes = [cls for cls in _all_error_classes() if cls.__module__ == exceptions.__name__]
    assert module_classes
    for error_class in module_classes:
        if error_class is TooManyEvents:
            error = error_class(5)
        elif error_class is UnknownOperation:
            error = error_class("x")
        else:
            error = error_class()
        entry = error.to_error(transport, with_code=True)
        assert isinstance(entry["errorType"], str) and entry["errorType"]
        assert entry["errorCode"] == error_class.error_code
        assert set(entry) <= {"errorType", "errorCode", "message"}
