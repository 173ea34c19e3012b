"""THE publish path: HTTP ``POST /event``, WebSocket ``publish`` and Python code all call
:func:`publish` (DESIGN §4).

The ladder is fixed: channel grammar → namespace → batch shape → authorization →
per-event checks → fan-out. A failure of the whole request raises a
:class:`~realtime.exceptions.RealtimeError`; a failure of one event lands in
``failed`` while the rest go out (PROTOCOL §2.2, §11).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import protocol
from .auth import Identity, Operation, RequestInfo, authorize
from .conf import realtime_settings
from .exceptions import BadRequest, NamespaceNotFound, NoEvents, TooManyEvents, Transport
from .hub import hub
from .paths import ChannelPath, parse_channel
from .selectors import NamespaceConfig, namespace_get

EVENT_TOO_LARGE = ("EventTooLargeException", "Transformed event is larger than 240KB")
EVENT_NOT_JSON = ("BadRequestException", "Event is not valid JSON")


@dataclass(slots=True)
class PublishResult:
    """The ``successful`` / ``failed`` report of PROTOCOL §2.2, one entry per event."""

    successful: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "successful": self.successful}


async def publish(
    *,
    channel: str,
    events: Sequence[Any],
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    trusted: bool = False,
) -> PublishResult:
    """Validate, authorize and fan out one publish request.

    Args:
        channel: the concrete channel path as the client sent it.
        events: 1 to ``MAX_EVENTS_PER_PUBLISH`` JSON strings.
        credentials: the authorization object (PROTOCOL §5.2), keys lowercased.
        request: transport facts for authorizers and handlers.
        trusted: server-side code; skips authorization.

    Raises:
        InvalidChannel, NamespaceNotFound, NoEvents, TooManyEvents, BadRequest,
        Unauthorized, ServiceUnavailable.
    """
    path = parse_channel(channel, allow_wildcard=False)
    namespace = await namespace_get(name=path.namespace)
    if namespace is None:
        raise NamespaceNotFound()
    _check_batch(events)
    if not trusted:
        await _authorize(namespace, credentials, request)
    return await _fan_out(path, events)


def _check_batch(events: Sequence[Any]) -> None:
    if len(events) == 0:
        raise NoEvents()
    limit = realtime_settings.max_events_per_publish
    if len(events) > limit:
        raise TooManyEvents(limit)
    if not all(isinstance(event, str) for event in events):
        raise BadRequest("Each event must be a string holding JSON")


async def _authorize(
    namespace: NamespaceConfig, credentials: Mapping[str, str] | None, request: RequestInfo
) -> Identity:
    modes = namespace.publish_auth_modes or tuple(realtime_settings.default_publish_auth_modes)
    return await authorize(
        modes=modes,
        credentials=credentials,
        operation=Operation.PUBLISH,
        namespace=namespace.name,
        request=request,
    )


async def _fan_out(path: ChannelPath, events: Sequence[str]) -> PublishResult:
    result = PublishResult()
    outgoing: list[str] = []
    max_size = realtime_settings.max_event_size
    for index, event in enumerate(events):
        identifier = str(uuid.uuid4())
        try:
            json.loads(event)
        except (ValueError, RecursionError):
            result.failed.append(_failure(identifier, index, EVENT_NOT_JSON))
            continue
        if len(event.encode()) > max_size:
            result.failed.append(_failure(identifier, index, EVENT_TOO_LARGE))
            continue
        outgoing.append(protocol.encode_event(event))
        result.successful.append({"identifier": identifier, "index": index})
    if outgoing:
        await hub.publish(path, outgoing)
    return result


def _failure(identifier: str, index: int, error: tuple[str, str]) -> dict[str, Any]:
    code, message = error
    return {"code": code, "identifier": identifier, "index": index, "message": message}


def server_request() -> RequestInfo:
    return RequestInfo(transport=Transport.SERVER)


async def apublish(channel: str, events: Sequence[Any]) -> PublishResult:
    """Publish from server code: each event is any JSON-serialisable value.

    No authorization runs (the caller is the server itself); everything else,
    from the channel grammar to fan-out, is the same path as HTTP and WebSocket.
    """
    encoded = [json.dumps(event, separators=(",", ":"), ensure_ascii=False) for event in events]
    return await publish(
        channel=channel, events=encoded, credentials=None, request=server_request(), trusted=True
    )


def publish_sync(channel: str, events: Sequence[Any]) -> PublishResult:
    """:func:`apublish` for synchronous code (views, management commands, ORM signals)."""
    from asgiref.sync import async_to_sync

    return async_to_sync(apublish)(channel, events)


__all__ = ["PublishResult", "apublish", "publish", "publish_sync"]
