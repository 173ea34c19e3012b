"""THE publish path: HTTP ``POST /event``, WebSocket ``publish`` and server code all
call :func:`publish` (DESIGN §4).

The ladder is fixed: channel grammar → namespace → the connection's publish rate →
batch shape → authorization → the namespace's inbound event rate (clients only) →
per-event parsing → ``on_publish`` → size check → fan-out → ``after_publish``.
:func:`publish` runs it up to the moment the :mod:`~realtime.delivery.bridge` has taken
the events, in call order, and returns a :class:`Publication`; awaiting
:meth:`Publication.completed` waits for the other processes and runs
``after_publish``. A WebSocket connection reads its next frame in between, so
its pipelined publishes share layer round trips and keep their order.

A failure of the whole request raises a :class:`~realtime.exceptions.RealtimeError`;
a failure of one event lands in ``failed`` while the rest go out
(PROTOCOL §2.2, §6.3, §11).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from realtime import handlers, signals
from realtime.auth import SERVER_IDENTITY, AuthRequest, Identity, Operation, RequestInfo, authorize
from realtime.auth.limits import connection_take, inbound_events_take
from realtime.conf import realtime_settings
from realtime.core import protocol
from realtime.core.paths import ChannelPath, parse_channel
from realtime.core.rates import Gcra
from realtime.delivery.bridge import bridge
from realtime.delivery.history import history_append
from realtime.exceptions import BadRequest, NamespaceNotFound, NoEvents, TooManyEvents, Transport
from realtime.handlers import HandlerKind, IncomingEvent
from realtime.ops.metrics import metrics
from realtime.store.selectors import NamespaceConfig, namespace_get

logger = logging.getLogger(__name__)

EVENT_TOO_LARGE = ("EventTooLargeException", "Transformed event is larger than 240KB")
EVENT_NOT_JSON = ("BadRequestException", "Event is not valid JSON")
EVENT_REJECTED = "EventRejectedException"

# Background after_publish calls, kept referenced until they finish.
_background: set[asyncio.Task[Any]] = set()


@dataclass(slots=True)
class PublishResult:
    """The ``successful`` / ``failed`` report of PROTOCOL §2.2, one entry per event."""

    successful: list[protocol.SuccessfulEntry] = field(default_factory=list)
    failed: list[protocol.FailedEntry] = field(default_factory=list)

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
    identifiers: Sequence[str] | None = None,
    connection_rates: Gcra | None = None,
) -> Publication:
    """Validate, authorize, run handlers on and fan out one publish request.

    Returns once the events are on their way, in call order; await
    :meth:`Publication.completed` for the outcome.

    Args:
        channel: the concrete channel path as the client sent it.
        events: 1 to ``MAX_EVENTS_PER_PUBLISH`` JSON strings.
        credentials: the authorization object (PROTOCOL §5.2), keys lowercased.
        request: transport facts for authorizers and handlers.
        trusted: server-side code; skips authorization.
        http_body: the raw HTTP body, for authorizers that sign it (SigV4).
        identifiers: one per event, for server code that names its events
            (the relay); by default each event gets a fresh UUID.
        connection_rates: the publishing WebSocket connection's own counts
            (its publish rate); ``None`` for HTTP and server code.

    Raises:
        InvalidChannel, NamespaceNotFound, RateExceeded, NoEvents, TooManyEvents,
        BadRequest, Unauthorized, HandlerRejected, HandlerError, ServiceUnavailable.
    """
    try:
        return await _publish(
            channel, events, credentials, request, trusted, http_body, identifiers, connection_rates
        )
    except Exception as error:
        metrics.publish_failed(channel, request.transport.value, error)
        raise


async def _publish(
    channel: str,
    events: Sequence[Any],
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    trusted: bool,
    http_body: bytes | None,
    identifiers: Sequence[str] | None,
    connection_rates: Gcra | None,
) -> Publication:
    path = parse_channel(channel, allow_wildcard=False)
    namespace = await namespace_get(name=path.namespace)
    if namespace is None:
        raise NamespaceNotFound()
    if connection_rates is not None:
        connection_take(connection_rates, "publish", namespace)
    _check_batch(events)
    if identifiers is not None and len(identifiers) != len(events):
        raise ValueError(f"{len(identifiers)} identifiers for {len(events)} events")
    if trusted:
        identity = SERVER_IDENTITY
    else:
        identity = await _authorize(namespace, channel, events, credentials, request, http_body)
    if request.transport is not Transport.SERVER:
        # Counted once authorized: an unauthorized client cannot spend the namespace's budget.
        await inbound_events_take(namespace, len(events))

    result = PublishResult()
    accepted: list[_Accepted] = []
    for index, text in enumerate(events):
        identifier = identifiers[index] if identifiers is not None else str(uuid.uuid4())
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
    publication = Publication(channel=channel, request=request, result=result)
    if outgoing:
        metrics.broadcast(namespace.name, (encoded for encoded, _ in outgoing))
        encoded_events = [encoded for encoded, _ in outgoing]
        keyed = epochs = None
        if namespace.history_size:
            # Offsets first (PROTOCOL §12, "History"): once per publication, by this process.
            keyed, epochs = await history_append(
                path, encoded_events, size=namespace.history_size, ttl=namespace.history_ttl
            )
        publication.sent = await bridge.fan_out(path, encoded_events, keyed, epochs)
        publication.published = Published(namespace, path, identity, [event for _, event in outgoing])
    return publication


@dataclass(frozen=True, slots=True)
class Published:
    """What went out, for ``after_publish`` and the ``event_published`` signal."""

    namespace: NamespaceConfig
    path: ChannelPath
    identity: Identity
    events: list[IncomingEvent]


@dataclass(slots=True)
class Publication:
    """A publish whose events the bridge has taken; :meth:`completed` finishes it."""

    channel: str
    request: RequestInfo
    result: PublishResult
    # Completes when every process's subscribers were given the events;
    # None when they have them already (one process) or nothing went out.
    sent: asyncio.Future[None] | None = None
    published: Published | None = None

    async def completed(self) -> PublishResult:
        """Wait for the fan-out, run ``after_publish``, count the outcome.

        Raises:
            ServiceUnavailable: the channel layer could not take the events; nobody got them.
        """
        transport = self.request.transport.value
        try:
            if self.sent is not None:
                await self.sent
            if self.published is not None:
                await _after_publish(self.published, self.request)
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
        ctx = handlers.context_for(
            Operation.PUBLISH, namespace.name, path, identity, request, tuple(a.event for a in accepted)
        )
        returned = handlers.normalize_outgoing(await handlers.call(handler, ctx), ctx.events)
        transformed = []
        for out in returned:
            item = by_id.pop(out.id)
            if out.error is not None:
                result.failed.append(_failure(out.id, item.index, EVENT_REJECTED, str(out.error)))
                continue
            text = dumps(out.payload)
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


async def _after_publish(published: Published, request: RequestInfo) -> None:
    namespace, path, identity, events = (
        published.namespace,
        published.path,
        published.identity,
        published.events,
    )
    handler = handlers.resolve(HandlerKind.AFTER_PUBLISH, namespace.name)
    if handler is not None:
        ctx = handlers.context_for(Operation.PUBLISH, namespace.name, path, identity, request, tuple(events))
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


async def _quietly(awaitable: Awaitable[object]) -> None:
    try:
        await awaitable
    except Exception:
        # handlers.call has logged it with its context; nothing else to do.
        pass


def dumps(payload: Any) -> str:
    """Compact JSON of a payload, escaped to ASCII only when raw text is not UTF-8-safe."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        text = json.dumps(payload, separators=(",", ":"))
    return text


def _failure(identifier: str, index: int, code: str, message: str) -> protocol.FailedEntry:
    return {"code": code, "identifier": identifier, "index": index, "message": message}


async def publish_from_server(
    channel: str, events: Sequence[Any], *, identifiers: Sequence[str] | None = None
) -> PublishResult:
    """Publish from server code: each event is any JSON-serialisable value.

    No authorization runs (the caller is the server itself); everything else,
    from the channel grammar to handlers and fan-out, is the same path as HTTP
    and WebSocket. ``identifiers`` (one per event) replace the fresh UUIDs in
    the result and in handlers' ``ctx.events``: the relay passes its keys.
    """
    publication = await publish(
        channel=channel,
        events=[dumps(event) for event in events],
        credentials=None,
        request=RequestInfo(transport=Transport.SERVER),
        trusted=True,
        identifiers=identifiers,
    )
    return await publication.completed()


__all__ = ["Publication", "PublishResult", "Published", "publish", "publish_from_server"]
