"""The one exception tree of ``realtime``.

Every failure the app reports to a client is an instance of :class:`RealtimeError`.
Each class carries its wire form (``error_type``, ``default_message``, HTTP status,
the numeric ``error_code`` used in ``connection_error`` frames), so the transports
translate an exception to the wire in exactly one place each: the consumer
(WebSocket frames) and the ``/event`` view (HTTP bodies).

    RealtimeError
    ├── BadRequest                  BadRequestException, 400
    │   ├── InvalidChannel            "Invalid Channel Format"
    │   ├── InvalidOperationId
    │   ├── TooManyEvents             HTTP and WebSocket texts differ (PROTOCOL §2.1, §3.8)
    │   ├── NoEvents
    │   └── MalformedMessage          a frame or body that is not the protocol's shape
    │       └── UnsupportedOperation  an unknown ``type`` (PROTOCOL §3.9)
    ├── Unauthorized                UnauthorizedException, 401
    │   ├── NamespaceNotFound         UnauthorizedException with no message (§2.3)
    │   ├── AccessRevoked             an open connection's credentials were revoked (PROTOCOL §12)
    │   └── TokenExpired              its token expired ("Token expired", as Amplify reads it)
    ├── ConnectionTooOld            ConnectionMaxAgeReached: REALTIME["MAX_CONNECTION_AGE"] passed
    ├── HandlerRejected             a handler refused the whole operation, 403
    ├── HandlerError                a handler failed or returned nonsense, 500
    │   └── HandlerTimeout            it ran past HANDLER_TIMEOUT, 504
    ├── MaxSubscriptionsReached     MaxSubscriptionsReachedError
    ├── DuplicateOperation          a subscription id reused for another channel
    ├── UnknownOperation            UnknownOperationError (unsubscribe of an unknown id)
    ├── LimitExceeded               LimitExceededError, 429
    │   └── RateExceeded            LimitExceededException, 429 (an operation's rate)
    └── ServiceUnavailable          ServiceUnavailable, 503 (channel layer down)

Event-level failures inside a publish (an event that is not JSON, one too large
after transformation) are not exceptions: they are reported in ``failed``.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import ClassVar, NotRequired, TypedDict


class Transport(StrEnum):
    """Where an error is going to be reported: the texts differ in a few places."""

    HTTP = "http"
    WEBSOCKET = "websocket"
    # Server code calling realtime.publish(); reported like HTTP.
    SERVER = "server"


class WireError(TypedDict):
    """One entry of an ``errors`` array (PROTOCOL §2.3, §3)."""

    errorType: str
    # Only in connection_error frames.
    errorCode: NotRequired[int]
    # Absent for the errors that carry none (NamespaceNotFound).
    message: NotRequired[str]


class RealtimeError(Exception):
    """Root of every error the app reports on the wire."""

    error_type: ClassVar[str] = "InternalFailure"
    default_message: ClassVar[str | None] = "An internal error occurred."
    http_status: ClassVar[int] = 500
    error_code: ClassVar[int] = 500

    # The WebSocket operation this error answers (a ``ClientType`` value) and its
    # id, once known: the reply is then that operation's own ``*_error`` frame.
    operation: str | None = None
    op_id: str | None = None

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message is not None else self.default_message
        super().__init__(self.message or self.error_type)

    def wire_error_type(self, transport: Transport) -> str:
        return self.error_type

    def wire_message(self, transport: Transport) -> str | None:
        return self.message

    def to_error(self, transport: Transport, *, with_code: bool = False) -> WireError:
        """One entry of an ``errors`` array, as PROTOCOL §2.3 / §3 shape it."""
        error: WireError = {"errorType": self.wire_error_type(transport)}
        if with_code:
            error["errorCode"] = self.error_code
        message = self.wire_message(transport)
        if message is not None:
            error["message"] = message
        return error


class BadRequest(RealtimeError):
    error_type = "BadRequestException"
    default_message = "The request is not valid."
    http_status = 400
    error_code = 400


class InvalidChannel(BadRequest):
    default_message = "Invalid Channel Format"


class InvalidOperationId(BadRequest):
    default_message = "Invalid operation id"


class TooManyEvents(BadRequest):
    """More than the per-publish limit. AWS words it differently per transport."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"Input exceeded {limit} event limit")

    def wire_error_type(self, transport: Transport) -> str:
        if transport is Transport.WEBSOCKET:
            return "InvalidInputError"
        return self.error_type

    def wire_message(self, transport: Transport) -> str | None:
        if transport is Transport.WEBSOCKET:
            return f"input exceeded {self.limit} event limit"
        return self.message


class NoEvents(BadRequest):
    default_message = "Input must contain at least 1 event"


class MalformedMessage(BadRequest):
    default_message = "The message is not valid."


class UnsupportedOperation(MalformedMessage):
    error_type = "UnsupportedOperation"
    default_message = "WebSocket did not understand the operation"


class Unauthorized(RealtimeError):
    error_type = "UnauthorizedException"
    # Declared again so NamespaceNotFound may clear it: mypy would otherwise take
    # this assignment as narrowing the base's ``str | None`` to ``str``.
    default_message: ClassVar[str | None] = "You are not authorized to make this call."
    http_status = 401
    error_code = 401


class NamespaceNotFound(Unauthorized):
    """An unknown namespace looks like an authorization failure, without a message."""

    default_message = None


class AccessRevoked(Unauthorized):
    """Server code closed a connection whose access ended (a revoked key, a deactivated user)."""

    default_message = "Access was revoked."


class TokenExpired(Unauthorized):
    """The credentials an open connection presented expired (a JWT's ``exp``, a key's expiry)."""

    # Amplify recognises an expired token by this text.
    default_message = "Token expired"


class ConnectionTooOld(RealtimeError):
    """The connection reached ``REALTIME["MAX_CONNECTION_AGE"]``; the client may reconnect at once."""

    error_type = "ConnectionMaxAgeReached"
    default_message = "The connection reached its maximum age; reconnect."
    http_status = 400
    error_code = 400


class HandlerRejected(RealtimeError):
    """An ``on_publish`` / ``on_subscribe`` handler refused the whole operation."""

    error_type = "BadRequestException"
    default_message = "The request was rejected by an event handler."
    http_status = 403
    error_code = 403


class HandlerError(RealtimeError):
    """A handler raised unexpectedly or broke its contract: a server-side fault."""

    error_type = "HandlerError"
    default_message = "The event handler failed."
    http_status = 500
    error_code = 500


class HandlerTimeout(HandlerError):
    error_type = "HandlerTimeout"
    default_message = "The event handler did not finish in time."
    http_status = 504
    error_code = 504


class MaxSubscriptionsReached(RealtimeError):
    error_type = "MaxSubscriptionsReachedError"
    default_message = "Max number of subscriptions reached"
    http_status = 400
    error_code = 400


class DuplicateOperation(RealtimeError):
    error_type = "DuplicatedOperationError"
    default_message = "Another operation with this id is already in progress"
    http_status = 400
    error_code = 400


class UnknownOperation(RealtimeError):
    error_type = "UnknownOperationError"
    http_status = 400
    error_code = 400

    def __init__(self, op_id: str) -> None:
        super().__init__(f"Unknown operation id {op_id}")


class LimitExceeded(RealtimeError):
    error_type = "LimitExceededError"
    default_message = "Rate limit exceeded"
    http_status = 429
    error_code = 429


class RateExceeded(LimitExceeded):
    """An operation's rate was spent: a publish, events of a namespace, subscribes, ``POST /event``."""

    error_type = "LimitExceededException"
    default_message = "Rate exceeded; retry after a delay."

    def __init__(self, message: str | None = None, *, retry_after: float = 1) -> None:
        super().__init__(message)
        # Whole seconds until the rate allows the operation again (HTTP Retry-After).
        self.retry_after = max(1, math.ceil(retry_after))


class ServiceUnavailable(RealtimeError):
    error_type = "ServiceUnavailable"
    default_message = "The service is temporarily unavailable, try again."
    http_status = 503
    error_code = 503
