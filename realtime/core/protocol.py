"""The AppSync Events WebSocket wire format (PROTOCOL §3). Pure: no Django, no I/O.

Client frames are parsed into frozen dataclasses; server frames are built as
JSON text. Parsing never returns a half-valid message: it returns a typed
message or raises a :class:`~realtime.exceptions.RealtimeError` that carries
the operation type and id it could read (:func:`bind_operation`), so the
consumer can answer with the operation's own ``*_error`` frame
(PROTOCOL §11, "Malformed frames").

``data`` frames are the hot path: an event is JSON-encoded once per publish
(:func:`encode_event`) and each subscription contributes only a pre-built
prefix (:func:`data_frame_prefix`), so a frame is ``prefix + event + "}"``.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, TypedDict, TypeVar

from realtime.core.history import Position, parse_since
from realtime.exceptions import (
    InvalidOperationId,
    MalformedMessage,
    RealtimeError,
    UnsupportedOperation,
    WireError,
)

# PROTOCOL §3.4: ids are 1-128 characters of [a-zA-Z0-9-_+].
OPERATION_ID = re.compile(r"[a-zA-Z0-9_+-]{1,128}\Z")
# Longest id we echo back in an error frame when the id itself is invalid.
_MAX_ECHOED_ID = 256


class CloseCode(IntEnum):
    # AWS closes with 1000 even after a connection_error (PROTOCOL §3.1).
    NORMAL = 1000
    # RFC 6455 "going away": this server process is draining (a restart or a
    # shutdown); the client reconnects, through the proxy, to another process.
    GOING_AWAY = 1001
    # RFC 6455 "policy violation": used for a subscriber that cannot keep up.
    SLOW_CONSUMER = 1008
    # RFC 6455 "try again later": the server is shutting down or overloaded.
    TRY_AGAIN_LATER = 1013
    # Private range (RFC 6455 §7.4.2), PROTOCOL §12: the connection reached its
    # maximum age (reconnecting is expected), and its access was revoked or expired.
    MAX_AGE = 4000
    ACCESS_ENDED = 4401


class ClientType(StrEnum):
    CONNECTION_INIT = "connection_init"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    PUBLISH = "publish"


class ServerType(StrEnum):
    CONNECTION_ACK = "connection_ack"
    CONNECTION_ERROR = "connection_error"
    KA = "ka"
    SUBSCRIBE_SUCCESS = "subscribe_success"
    SUBSCRIBE_ERROR = "subscribe_error"
    UNSUBSCRIBE_SUCCESS = "unsubscribe_success"
    UNSUBSCRIBE_ERROR = "unsubscribe_error"
    PUBLISH_SUCCESS = "publish_success"
    PUBLISH_ERROR = "publish_error"
    DATA = "data"
    BROADCAST_ERROR = "broadcast_error"
    ERROR = "error"


# The error frame that answers each operation (PROTOCOL §3.4, §3.7, §3.8).
ERROR_REPLY = {
    ClientType.SUBSCRIBE: ServerType.SUBSCRIBE_ERROR,
    ClientType.UNSUBSCRIBE: ServerType.UNSUBSCRIBE_ERROR,
    ClientType.PUBLISH: ServerType.PUBLISH_ERROR,
}


@dataclass(frozen=True, slots=True)
class ConnectionInit:
    """``{"type":"connection_init"}``: optional; answered with ``connection_ack``."""

    operation: ClassVar[ClientType] = ClientType.CONNECTION_INIT


@dataclass(frozen=True, slots=True)
class Subscribe:
    operation: ClassVar[ClientType] = ClientType.SUBSCRIBE

    id: str
    channel: str
    authorization: Mapping[str, str] | None = None
    # Extension (PROTOCOL §12, "History"): replay what was published after this position.
    since: Position | None = None


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    operation: ClassVar[ClientType] = ClientType.UNSUBSCRIBE

    id: str


@dataclass(frozen=True, slots=True)
class Publish:
    operation: ClassVar[ClientType] = ClientType.PUBLISH

    id: str
    channel: str
    # Left as the client sent them: the publish path checks count and types, in one
    # place for HTTP and WebSocket alike.
    events: tuple[Any, ...] = field(default=())
    authorization: Mapping[str, str] | None = None


ClientMessage = ConnectionInit | Subscribe | Unsubscribe | Publish

E = TypeVar("E", bound=RealtimeError)


def bind_operation(error: E, operation: ClientType | None, op_id: str | None) -> E:
    """Attach the operation an error answers, so the reply frame can name it."""
    error.operation = operation
    error.op_id = op_id
    return error


def bind_frame(error: E, frame: ClientMessage) -> E:
    """Attach the operation of a frame that parsed to an error raised while handling it."""
    return bind_operation(error, frame.operation, getattr(frame, "id", None))


def error_operation(error: BaseException) -> tuple[ClientType | None, str | None]:
    """The (operation, id) bound to an error, or ``(None, None)``."""
    operation = getattr(error, "operation", None)
    return (ClientType(operation) if operation is not None else None), getattr(error, "op_id", None)


def parse(text: str | bytes | None) -> ClientMessage:
    """Parse one client frame.

    Raises:
        MalformedMessage: not JSON, not an object, a missing or mistyped field.
        UnsupportedOperation: an unknown ``type``.
        InvalidOperationId: an id outside the PROTOCOL §3.4 grammar.
    """
    if text is None or isinstance(text, bytes):
        # PROTOCOL §3.10: every frame is a UTF-8 text frame.
        raise bind_operation(MalformedMessage("Binary frames are not supported"), None, None)
    try:
        frame = json.loads(text)
    except (ValueError, RecursionError):
        raise bind_operation(MalformedMessage("Message is not valid JSON"), None, None) from None
    if not isinstance(frame, dict):
        raise bind_operation(MalformedMessage("Message must be a JSON object"), None, None)

    raw_id = frame.get("id")
    echo_id = _echoable_id(raw_id)
    kind = frame.get("type")
    try:
        op_type = ClientType(kind) if isinstance(kind, str) else None
    except ValueError:
        op_type = None
    if op_type is None:
        if not isinstance(kind, str):
            raise bind_operation(MalformedMessage("Message must have a string type"), None, echo_id)
        raise bind_operation(UnsupportedOperation(), None, echo_id)
    if op_type is ClientType.CONNECTION_INIT:
        return ConnectionInit()

    try:
        op_id = _operation_id(raw_id)
        if op_type is ClientType.UNSUBSCRIBE:
            return Unsubscribe(op_id)
        channel = frame.get("channel")
        if not isinstance(channel, str):
            raise MalformedMessage("channel must be a string")
        authorization = parse_authorization(frame.get("authorization"))
        if op_type is ClientType.SUBSCRIBE:
            return Subscribe(op_id, channel, authorization, parse_since(frame.get("since")))
        events = frame.get("events")
        if not isinstance(events, list):
            raise MalformedMessage("events must be an array")
        return Publish(op_id, channel, tuple(events), authorization)
    except RealtimeError as error:
        raise bind_operation(error, op_type, echo_id) from None


def _echoable_id(raw: object) -> str | None:
    """The id to name in an error frame, even an invalid one, if it can be sent back.

    A JSON ``\\ud800`` escape yields a lone surrogate, which no UTF-8 text frame
    can carry: echoing it would make the reply itself unsendable.
    """
    if not isinstance(raw, str) or len(raw) > _MAX_ECHOED_ID:
        return None
    try:
        raw.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return raw


def _operation_id(raw: object) -> str:
    if not isinstance(raw, str):
        raise MalformedMessage("id must be a string")
    if not OPERATION_ID.match(raw):
        raise InvalidOperationId()
    return raw


def parse_authorization(raw: object) -> dict[str, str] | None:
    """An authorization object (PROTOCOL §5.2), keys lowercased.

    Keys are case-insensitive across clients; values that are not strings
    (no client sends them) are ignored, as unknown keys are.
    """
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise MalformedMessage("authorization must be an object")
    return {str(k).lower(): v for k, v in raw.items() if isinstance(v, str)}


# ---------------------------------------------------------------------------
# Server frames


def _dumps(frame: Mapping[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"), ensure_ascii=False)


# The same text for every connection of a process (one setting): encoded once, not per connect.
@functools.lru_cache(maxsize=8)
def connection_ack(timeout_ms: int) -> str:
    # Top-level connectionTimeoutMs for Amplify and Kotlin; the payload copy is
    # what Swift reads (PROTOCOL §3.2).
    return _dumps(
        {
            "type": ServerType.CONNECTION_ACK,
            "connectionTimeoutMs": timeout_ms,
            "payload": {"connectionTimeoutMs": timeout_ms},
        }
    )


KEEPALIVE = _dumps({"type": ServerType.KA})


def connection_error(errors: list[WireError]) -> str:
    return _dumps({"type": ServerType.CONNECTION_ERROR, "errors": errors})


def success(kind: ServerType, op_id: str) -> str:
    return _dumps({"type": kind, "id": op_id})


def subscribe_success(op_id: str, extension: Mapping[str, Any] | None = None) -> str:
    """``subscribe_success``; a history channel's adds its position (PROTOCOL §12, "History")."""
    if not extension:
        return success(ServerType.SUBSCRIBE_SUCCESS, op_id)
    return _dumps({"type": ServerType.SUBSCRIBE_SUCCESS, "id": op_id, **extension})


class SuccessfulEntry(TypedDict):
    """An event of a publish that was accepted (PROTOCOL §2.2)."""

    identifier: str
    # The event's position in the request.
    index: int


class FailedEntry(TypedDict):
    """An event of a publish that was not (PROTOCOL §2.2)."""

    identifier: str
    index: int
    code: str
    message: str


def publish_success(op_id: str, successful: list[SuccessfulEntry], failed: list[FailedEntry]) -> str:
    return _dumps(
        {"type": ServerType.PUBLISH_SUCCESS, "id": op_id, "successful": successful, "failed": failed}
    )


def error_frame(kind: ServerType, op_id: str | None, errors: list[WireError]) -> str:
    frame: dict[str, Any] = {"type": kind}
    if op_id is not None:
        frame["id"] = op_id
    frame["errors"] = errors
    return _dumps(frame)


def encode_event(event: str) -> str:
    """The JSON string literal of one event, as it sits in a ``data`` frame."""
    return json.dumps(event, ensure_ascii=False)


def data_frame_prefix(subscription_id: str) -> str:
    """Everything of a ``data`` frame before the event.

    Safe to build by concatenation: subscription ids match
    :data:`OPERATION_ID`, which needs no JSON escaping.
    """
    return '{"type":"data","id":"' + subscription_id + '","event":'


DATA_FRAME_SUFFIX = "}"
