"""THE publish path: HTTP ``POST /event``, WebSocket ``publish`` and Python code all call
:func:`publish` (DESIGN §4).

The ladder is fixed: channel grammar → namespace → batch shape → authorization →
per-event parsing → ``on_publish`` → size check → fan-out → ``after_publish``.
A failure of the whole request raises a :class:`~realtime.exceptions.RealtimeError`;
a failure of one event lands in ``failed`` while the rest go out
(PROTOCOL §2.2, §6.3, §11).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import handlers, protocol, signals
from .auth import SERVER_IDENTITY, AuthRequest, Identity, Operation, RequestInfo, authorize
from .conf import realtime_settings
from .exceptions import BadRequest, NamespaceNotFound, NoEvents, TooManyEvents, Transport
from .handlers import HandlerContext, HandlerKind, IncomingEvent
from .handshake import handler_headers
from .hub import hub
from .metrics import metrics
from .paths import ChannelPath, parse_channel
from .selectors import NamespaceConfig, namespace_get

logger = logging.getLogger(__name__)

EVENT_TOO_LARGE = ("EventTooLargeException", "Transformed event is larger than 240KB")
EVENT_NOT_JSON = ("BadRequestException", "Event is not valid JSON")
EVENT_REJECTED = "EventRejectedException"

# Background after_publish calls, kept referenced until they finish.
_background: set[asyncio.Task[Any]] = set()


@dataclass(slots=True)
class PublishResult:
    """The ``successful`` / ``failed`` report of PROTOCOL §2.2, one entry per event."""

    successful: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "successful": self.successful}


@dataclass(slots=True)
class _Accepted:
    """An event that parsed: where it was in the request, and its text."""

    index: int
    event: IncomingEvent
    text: str


async def publish(
    *,
    channel: str,
    events: Sequence[Any],
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    trusted: bool = False,
    http_body: bytes | None = None,
) -> PublishResult:
    """Validate, authorize, run handlers on and fan out one publish request.

    Args:
        channel: the concrete channel path as the client sent it.
        events: 1 to ``MAX_EVENTS_PER_PUBLISH`` JSON strings.
        credentials: the authorization object (PROTOCOL §5.2), keys lowercased.
        request: transport facts for authorizers and handlers.
        trusted: server-side code; skips authorization.
        http_body: the raw HTTP body, for authorizers that sign it (SigV4).

    Raises:
        InvalidChannel, NamespaceNotFound, NoEvents, TooManyEvents, BadRequest,
        Unauthorized, HandlerRejected, HandlerError, ServiceUnavailable.
    """
    started = await start_publish(
        channel=channel,
        events=events,
        credentials=credentials,
        request=request,
        trusted=trusted,
        http_body=http_body,
    )
    return await started.finish()


async def start_publish(
    *,
    channel: str,
    events: Sequence[Any],
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    trusted: bool = False,
    http_body: bytes | None = None,
) -> PublishInFlight:
    """:func:`publish` up to the moment the hub has taken the events, in call order.

    A WebSocket connection handles its next frame from here while the events
    travel (:meth:`PublishInFlight.finish` tells how that went): its pipelined
    publishes then share layer round trips, and keep their order.
    """
    try:
        return await _start_publish(channel, events, credentials, request, trusted, http_body)
    except Exception as error:
        metrics.publish_failed(channel, request.transport.value, error)
        raise


async def _start_publish(
    channel: str,
    events: Sequence[Any],
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    trusted: bool,
    http_body: bytes | None,
) -> PublishInFlight:
    path = parse_channel(channel, allow_wildcard=False)
    namespace = await namespace_get(name=path.namespace)
    if namespace is None:
        raise NamespaceNotFound()
    _check_batch(events)
    if trusted:
        identity = SERVER_IDENTITY
    else:
        identity = await _authorize(namespace, channel, events, credentials, request, http_body)

    result = PublishResult()
    accepted: list[_Accepted] = []
    for index, text in enumerate(events):
        identifier = str(uuid.uuid4())
        try:
            # A "\ud800" escape in the frame leaves a lone surrogate in the text:
            # no UTF-8 frame could carry it to subscribers.
            text.encode()
            payload = json.loads(text)
        except (ValueError, RecursionError):
            result.failed.append(_failure(identifier, index, *EVENT_NOT_JSON))
            continue
        accepted.append(_Accepted(index, IncomingEvent(identifier, payload), text))

    outgoing = await _run_on_publish(namespace, path, identity, request, accepted, result)
    result.successful.sort(key=lambda entry: entry["index"])
    result.failed.sort(key=lambda entry: entry["index"])
    in_flight = PublishInFlight(channel, request, result)
    if outgoing:
        metrics.broadcast(namespace.name, (encoded for encoded, _ in outgoing))
        in_flight.sent = await hub.take(path, [encoded for encoded, _ in outgoing])
        in_flight.after = (namespace, path, identity, [event for _, event in outgoing])
    return in_flight


class PublishInFlight:
    """A publish whose events the hub has taken; :meth:`finish` completes it."""

    __slots__ = ("channel", "request", "result", "sent", "after")

    def __init__(self, channel: str, request: RequestInfo, result: PublishResult) -> None:
        self.channel = channel
        self.request = request
        self.result = result
        # Completes when every process's subscribers were given the events.
        self.sent: asyncio.Future[None] | None = None
        self.after: tuple[NamespaceConfig, ChannelPath, Identity, list[IncomingEvent]] | None = None

    async def finish(self) -> PublishResult:
        """Wait for the fan-out, run ``after_publish``, count the outcome.

        Raises:
            ServiceUnavailable: the channel layer could not take the events; nobody got them.
        """
        transport = self.request.transport.value
        try:
            if self.sent is not None:
                await self.sent
            if self.after is not None:
                namespace, path, identity, events = self.after
                await _after_publish(namespace, path, identity, self.request, events)
        except Exception as error:
            metrics.publish_failed(self.channel, transport, error)
            raise
        metrics.published(self.channel, transport, len(self.result.failed))
        return self.result


def _check_batch(events: Sequence[Any]) -> None:
    if len(events) == 0:
        raise NoEvents()
    limit = realtime_settings.max_events_per_publish
    if len(events) > limit:
        raise TooManyEvents(limit)
    if not all(isinstance(event, str) for event in events):
        raise BadRequest("Each event must be a string holding JSON")


async def _authorize(
    namespace: NamespaceConfig,
    channel: str,
    events: Sequence[str],
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    http_body: bytes | None,
) -> Identity:
    auth = AuthRequest(
        operation=Operation.PUBLISH,
        request=request,
        namespace=namespace.name,
        channel=channel,
        events=events,
        http_body=http_body,
    )
    modes = namespace.publish_auth_modes or realtime_settings.default_publish_auth_modes
    return await authorize(modes=modes, credentials=credentials, auth=auth)


def _context(
    operation: Operation,
    namespace: NamespaceConfig,
    path: ChannelPath,
    identity: Identity,
    request: RequestInfo,
    events: tuple[IncomingEvent, ...] = (),
) -> HandlerContext:
    return HandlerContext(
        operation=operation.value,
        channel=handlers.ChannelInfo(path.path, path.all_segments),
        namespace=namespace.name,
        identity=identity.as_context(),
        request_headers=handler_headers(request.headers),
        events=events,
        server=identity is SERVER_IDENTITY,
    )


async def _run_on_publish(
    namespace: NamespaceConfig,
    path: ChannelPath,
    identity: Identity,
    request: RequestInfo,
    accepted: list[_Accepted],
    result: PublishResult,
) -> list[tuple[str, IncomingEvent]]:
    """Apply ``on_publish`` and the size limit; returns (encoded, event) pairs to send."""
    if not accepted:
        return []
    handler = handlers.resolve(HandlerKind.PUBLISH, namespace.name, namespace.publish_handler)
    by_id = {item.event.id: item for item in accepted}
    if handler is None:
        # Unchanged events go out as the publisher wrote them: no re-encoding.
        transformed = [(item, item.text, item.event) for item in accepted]
    else:
        ctx = _context(
            Operation.PUBLISH, namespace, path, identity, request, tuple(a.event for a in accepted)
        )
        returned = handlers.normalize_outgoing(await handlers.call(handler, ctx), ctx.events)
        transformed = []
        for out in returned:
            item = by_id.pop(out.id)
            if out.error is not None:
                result.failed.append(_failure(out.id, item.index, EVENT_REJECTED, str(out.error)))
                continue
            text = _dumps(out.payload)
            transformed.append((item, text, IncomingEvent(out.id, out.payload)))
        # Events the handler left out are dropped: accepted, not broadcast.
        metrics.dropped(namespace.name, len(by_id))
        for item in by_id.values():
            result.successful.append({"identifier": item.event.id, "index": item.index})

    max_size = realtime_settings.max_event_size
    outgoing: list[tuple[str, IncomingEvent]] = []
    for item, text, event in transformed:
        if len(text.encode()) > max_size:
            result.failed.append(_failure(event.id, item.index, *EVENT_TOO_LARGE))
            continue
        outgoing.append((protocol.encode_event(text), event))
        result.successful.append({"identifier": event.id, "index": item.index})
    return outgoing


async def _after_publish(
    namespace: NamespaceConfig,
    path: ChannelPath,
    identity: Identity,
    request: RequestInfo,
    events: list[IncomingEvent],
) -> None:
    handler = handlers.resolve(HandlerKind.AFTER_PUBLISH, namespace.name)
    if handler is not None:
        ctx = _context(Operation.PUBLISH, namespace, path, identity, request, tuple(events))
        task = asyncio.get_running_loop().create_task(_quietly(handlers.call(handler, ctx)))
        _background.add(task)
        task.add_done_callback(_background.discard)
    if signals.event_published.receivers:
        await signals.event_published.asend(
            signals.SENDER,
            channel=path.path,
            namespace=namespace.name,
            events=[event.payload for event in events],
            identity=identity,
            transport=request.transport.value,
        )


async def _quietly(awaitable: Any) -> None:
    try:
        await awaitable
    except Exception:
        # handlers.call has logged it with its context; nothing else to do.
        pass


def _dumps(payload: Any) -> str:
    """Compact JSON of a payload, escaped to ASCII only when raw text is not UTF-8-safe."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(payload, separators=(",", ":"))
    return text


def _failure(identifier: str, index: int, code: str, message: str) -> dict[str, Any]:
    return {"code": code, "identifier": identifier, "index": index, "message": message}


async def apublish(channel: str, events: Sequence[Any]) -> PublishResult:
    """Publish from server code: each event is any JSON-serialisable value.

    No authorization runs (the caller is the server itself); everything else,
    from the channel grammar to handlers and fan-out, is the same path as HTTP
    and WebSocket.
    """
    encoded = [_dumps(event) for event in events]
    return await publish(
        channel=channel,
        events=encoded,
        credentials=None,
        request=RequestInfo(transport=Transport.SERVER),
        trusted=True,
    )


def publish_sync(channel: str, events: Sequence[Any]) -> PublishResult:
    """:func:`apublish` for synchronous code (views, management commands, ORM signals)."""
    from asgiref.sync import async_to_sync

    return async_to_sync(apublish)(channel, events)


async def subscription_authorize(
    *,
    channel: ChannelPath,
    raw_channel: str,
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
) -> tuple[NamespaceConfig, Identity]:
    """Everything a subscribe needs before it goes live: namespace, auth, ``on_subscribe``.

    Raises:
        NamespaceNotFound, Unauthorized, HandlerRejected, HandlerError.
    """
    namespace = await namespace_get(name=channel.namespace)
    if namespace is None:
        raise NamespaceNotFound()
    auth = AuthRequest(
        operation=Operation.SUBSCRIBE, request=request, namespace=namespace.name, channel=raw_channel
    )
    modes = namespace.subscribe_auth_modes or realtime_settings.default_subscribe_auth_modes
    identity = await authorize(modes=modes, credentials=credentials, auth=auth)
    handler = handlers.resolve(HandlerKind.SUBSCRIBE, namespace.name, namespace.subscribe_handler)
    if handler is not None:
        await handlers.call(handler, _context(Operation.SUBSCRIBE, namespace, channel, identity, request))
    return namespace, identity


__all__ = ["PublishResult", "apublish", "publish", "publish_sync", "subscription_authorize"]
