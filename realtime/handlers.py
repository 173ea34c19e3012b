"""Python event handlers per namespace: AppSync's ``onPublish`` / ``onSubscribe`` (PROTOCOL §6).

Register them in a ``realtime_handlers.py`` module of any installed app (it is
imported at start-up)::

    from realtime import handlers
    @handlers.on_publish("chat")
    def clean(ctx: handlers.HandlerContext) -> list[handlers.OutgoingEvent]:
        return [handlers.OutgoingEvent(e.id, {**e.payload, "text": e.payload["text"].strip()})
                for e in ctx.events]

    @handlers.on_subscribe("users")
    def only_owner(ctx):
        if ctx.identity is None or ctx.channel.segments[1] != ctx.identity.get("sub"):
            raise handlers.Unauthorized()

    @handlers.after_publish("chat")
    def persist(ctx): ...   # runs after fan-out; events go out unchanged

    @handlers.on_connect
    def admit(ctx: handlers.ConnectionContext):
        if ctx.source_ip in BLOCKED:
            raise handlers.Unauthorized()
        return {"joined_at": time.time()}   # attached: ctx.data of later handlers

    @handlers.on_disconnect
    def forget(ctx: handlers.ConnectionContext): ...   # once per connection, whatever closed it

Contracts:

- ``on_publish(ctx)`` returns ``None`` (broadcast every event unchanged) or a
  list of :class:`OutgoingEvent`, dicts with ``id``, ``payload``, ``error``, or
  the :class:`IncomingEvent` items of ``ctx.events`` themselves.
  Each ``id`` must be an incoming id, at most once; incoming events left out
  are dropped; ``None`` items are ignored; an item with ``error`` is not
  broadcast and is reported in ``failed`` with that message.
- Raising :class:`Reject` refuses the whole operation (``publish_error`` /
  ``subscribe_error`` / HTTP 403 with the message); raising
  :class:`Unauthorized` refuses it as ``UnauthorizedException``.
- ``on_subscribe(ctx)`` returns to allow and raises to deny.
- ``after_publish(ctx)`` sees the events as broadcast; it cannot change or
  delay them, and its errors are only logged.
- ``on_connect(ctx)`` (one for the site) runs once a connection's credentials
  are authorized; raising refuses the connection (``connection_error`` with
  the error's type), and a mapping it returns is attached to the connection
  (``ctx.data`` of its later connection and presence handlers).
- ``on_disconnect(ctx)`` (one for the site) runs exactly once after every
  close of a connection that ``on_connect`` admitted, whatever closed it; its
  errors are only logged.
- Sync handlers run in a worker thread (the ORM is fine there); async ones are
  awaited. Each call is bounded by ``REALTIME["HANDLER_TIMEOUT"]`` seconds; a
  handler that fails or returns a malformed result is a clean ``HandlerError``
  and a log line with its context, never a crash.

A namespace uses the handlers registered under its own name, unless its row
names another registered handler (``publish_handler`` / ``subscribe_handler``,
selectable in the admin) or a dotted path to a callable.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from channels.db import database_sync_to_async
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from realtime.auth import SERVER_IDENTITY, Identity, Operation, RequestInfo
from realtime.conf import realtime_settings
from realtime.core.headers import handler_headers
from realtime.core.paths import ChannelPath
from realtime.exceptions import HandlerError, HandlerRejected, HandlerTimeout, Unauthorized
from realtime.ops.metrics import metrics

logger = logging.getLogger(__name__)

__all__ = [
    "ChannelInfo",
    "CloseCause",
    "ConnectionContext",
    "HandlerContext",
    "IncomingEvent",
    "OutgoingEvent",
    "Reject",
    "Unauthorized",
    "after_publish",
    "on_connect",
    "on_disconnect",
    "on_presence",
    "on_publish",
    "on_subscribe",
]

# Raised by handlers to refuse the whole operation with a message of their own.
Reject = HandlerRejected


class HandlerKind(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    AFTER_PUBLISH = "after_publish"
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    PRESENCE = "presence"


CONNECT_OPERATION = "CONNECT"
DISCONNECT_OPERATION = "DISCONNECT"

# Connection handlers serve the whole site, not a namespace: they register under this name.
SITE = "site"
# The namespace label of connection handlers in metrics and logs.
CONNECTION_LABEL = "_connection"


class CloseCause(StrEnum):
    """Why a connection ended (``ConnectionContext.close_cause`` of ``on_disconnect``)."""

    CLIENT = "client"  # the client closed, or its socket went away
    SERVER = "server"  # this server closed it (a refusal after connect, a control message)
    SLOW_CONSUMER = "slow_consumer"  # its outbound buffer overflowed
    REVOKED = "revoked"  # its credentials were revoked or expired
    MAX_AGE = "max_age"  # it reached REALTIME["MAX_CONNECTION_AGE"]
    SHUTDOWN = "shutdown"  # the server process stopped serving it


@dataclass(frozen=True, slots=True)
class IncomingEvent:
    """One published event: its identifier and parsed JSON payload."""

    id: str
    payload: Any


@dataclass(slots=True)
class OutgoingEvent:
    """An event to broadcast (``payload``) or to report as failed (``error``)."""

    id: str
    payload: Any = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    path: str
    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HandlerContext:
    """What a handler knows (PROTOCOL §6.2); :meth:`as_dict` is AppSync's ``ctx`` shape."""

    operation: str
    channel: ChannelInfo
    namespace: str
    identity: Mapping[str, Any] | None
    request_headers: Mapping[str, str]
    events: tuple[IncomingEvent, ...] = ()
    stash: dict[str, Any] = field(default_factory=dict)
    # True when server code published (``realtime.publish``), not a client.
    server: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "identity": self.identity,
            "request": {"headers": dict(self.request_headers), "domainName": None},
            "info": {
                "channel": {"path": self.channel.path, "segments": list(self.channel.segments)},
                "channelNamespace": {"name": self.namespace},
                "operation": self.operation,
            },
            "events": [{"id": event.id, "payload": event.payload} for event in self.events],
            "stash": self.stash,
        }


@dataclass(frozen=True, slots=True)
class ConnectionContext:
    """What a connection handler knows: the connection, never its credentials.

    ``data`` is the connection's own dict: what ``on_connect`` returned (or put
    there) is what later handlers of the connection see.
    """

    operation: str  # "CONNECT" or "DISCONNECT"
    connection_id: str
    identity: Mapping[str, Any] | None
    request_headers: Mapping[str, str]
    source_ip: str | None
    data: dict[str, Any]
    # on_disconnect only: the close code (None when the socket vanished) and why.
    close_code: int | None = None
    close_cause: CloseCause | None = None


def connection_context(
    operation: Operation | str,
    connection_id: str,
    identity: Identity | None,
    request: RequestInfo,
    data: dict[str, Any],
    close_code: int | None = None,
    close_cause: CloseCause | None = None,
) -> ConnectionContext:
    """The context a connection handler sees."""
    return ConnectionContext(
        operation=str(operation),
        connection_id=connection_id,
        identity=identity.as_context() if identity is not None else None,
        request_headers=handler_headers(request.headers),
        source_ip=request.source_ip,
        data=data,
        close_code=close_code,
        close_cause=close_cause,
    )


def context_for(
    operation: Operation,
    namespace: str,
    path: ChannelPath,
    identity: Identity,
    request: RequestInfo,
    events: tuple[IncomingEvent, ...] = (),
) -> HandlerContext:
    """The context a handler sees for one operation on ``path`` (PROTOCOL §6.2)."""
    return HandlerContext(
        operation=operation.value,
        channel=ChannelInfo(path.path, path.all_segments),
        namespace=namespace,
        identity=identity.as_context(),
        request_headers=handler_headers(request.headers),
        events=events,
        server=identity is SERVER_IDENTITY,
    )


Handler = Callable[[HandlerContext], Any]
F = TypeVar("F", bound=Handler)
ConnectionHandler = Callable[[ConnectionContext], Any]
C = TypeVar("C", bound=ConnectionHandler)

_registry: dict[HandlerKind, dict[str, Callable[..., Any]]] = {kind: {} for kind in HandlerKind}
R = TypeVar("R", bound=Callable[..., Any])


def _register(kind: HandlerKind, name: str) -> Callable[[R], R]:
    def decorator(fn: R) -> R:
        registered = _registry[kind]
        if name in registered and registered[name] is not fn:
            raise ImproperlyConfigured(f"A {kind} handler named {name!r} is already registered.")
        registered[name] = fn
        return fn

    return decorator


def on_publish(name: str) -> Callable[[F], F]:
    """Register an ``on_publish`` handler; ``name`` is the namespace it serves by default."""
    return _register(HandlerKind.PUBLISH, name)


def on_subscribe(name: str) -> Callable[[F], F]:
    """Register an ``on_subscribe`` handler; ``name`` is the namespace it serves by default."""
    return _register(HandlerKind.SUBSCRIBE, name)


def after_publish(name: str) -> Callable[[F], F]:
    """Register a fire-and-forget handler run after fan-out (side effects only)."""
    return _register(HandlerKind.AFTER_PUBLISH, name)


def on_presence(name: str) -> Callable[[F], F]:
    """Register an ``on_presence`` handler: what a subscriber shows on presence channels.

    It runs on subscribe in a namespace that lists members, and returns a mapping
    of JSON values (a user id, a nickname; never credentials) or ``None``.
    """
    return _register(HandlerKind.PRESENCE, name)


def on_connect(fn: C) -> C:
    """Register the site's ``on_connect`` handler (decorator; one per site)."""
    return _register(HandlerKind.CONNECT, SITE)(fn)


def on_disconnect(fn: C) -> C:
    """Register the site's ``on_disconnect`` handler (decorator; one per site)."""
    return _register(HandlerKind.DISCONNECT, SITE)(fn)


def registered_names(kind: HandlerKind) -> list[str]:
    return sorted(_registry[kind])


def unregister(kind: HandlerKind, name: str) -> None:
    """Remove a registration (tests, and apps that swap handlers)."""
    _registry[kind].pop(name, None)


def connection_handler(kind: HandlerKind) -> ConnectionHandler | None:
    """The site's ``on_connect`` or ``on_disconnect`` handler, if one is registered."""
    return _registry[kind].get(SITE)


async def connection_opened(
    connection_id: str, identity: Identity | None, request: RequestInfo
) -> dict[str, Any]:
    """Run ``on_connect`` for an authorized connection; the data to attach to it.

    Raises:
        HandlerRejected, Unauthorized, HandlerTimeout, HandlerError: as :func:`call`.
    """
    data: dict[str, Any] = {}
    handler = connection_handler(HandlerKind.CONNECT)
    if handler is None:
        return data
    ctx = connection_context(CONNECT_OPERATION, connection_id, identity, request, data)
    result = await call_for_connection(handler, ctx)
    if result is not None:
        if not isinstance(result, Mapping):
            logger.error("on_connect handler %s returned %r, not a mapping", _name(handler), type(result))
            raise HandlerError("on_connect must return a mapping or None")
        data.update(result)
    return data


async def connection_ended(ctx: ConnectionContext) -> None:
    """Run ``on_disconnect``; its failures are logged (and counted), never raised."""
    handler = connection_handler(HandlerKind.DISCONNECT)
    if handler is None:
        return
    try:
        await call_for_connection(handler, ctx)
    except Exception as error:
        # call() logged the handler's own failure; a refusal means nothing here.
        logger.debug("on_disconnect for connection %s ended with %r", ctx.connection_id, error)


def resolve(kind: HandlerKind, namespace: str, configured: str = "") -> Handler | None:
    """The handler of ``kind`` for a namespace: its row's choice, else its own name's."""
    if configured:
        handler = _registry[kind].get(configured)
        if handler is not None:
            return handler
        try:
            return import_string(configured)  # type: ignore[no-any-return]  # a dotted path to a handler
        except ImportError:
            raise ImproperlyConfigured(
                f"Namespace {namespace!r} names {kind} handler {configured!r}, "
                "which is neither registered nor importable."
            ) from None
    return _registry[kind].get(namespace)


async def call(handler: Handler, ctx: HandlerContext) -> Any:
    """Run one handler call, bounded in time, with failures made clean.

    Raises:
        HandlerRejected, Unauthorized: the handler refused the operation.
        HandlerTimeout: it ran longer than ``HANDLER_TIMEOUT``.
        HandlerError: it raised anything else.
    """
    return await _bounded(handler, ctx, ctx.namespace, ctx.operation, ctx.channel.path)


async def call_for_connection(handler: ConnectionHandler, ctx: ConnectionContext) -> Any:
    """:func:`call` for a connection handler; raises what :func:`call` raises."""
    return await _bounded(handler, ctx, CONNECTION_LABEL, ctx.operation, f"connection {ctx.connection_id}")


async def _bounded(
    handler: Callable[[Any], Any], ctx: Any, namespace: str, operation: str, subject: str
) -> Any:
    if inspect.iscoroutinefunction(handler):
        awaitable: Awaitable[Any] = handler(ctx)
    else:
        # Not the thread-sensitive executor: a stuck handler must not block the
        # thread every other ORM call of the process runs in.
        awaitable = database_sync_to_async(handler, thread_sensitive=False)(ctx)
    start = time.perf_counter()
    try:
        return await asyncio.wait_for(awaitable, realtime_settings.handler_timeout)
    except (HandlerRejected, Unauthorized):
        raise
    except TimeoutError:
        logger.error("%s handler %s for %s timed out", operation, _name(handler), subject)
        metrics.handler_failed(namespace, operation)
        raise HandlerTimeout() from None
    except Exception:
        logger.exception("%s handler %s for %s failed", operation, _name(handler), subject)
        metrics.handler_failed(namespace, operation)
        raise HandlerError() from None
    finally:
        metrics.handler_called(namespace, operation, time.perf_counter() - start)


def _name(handler: Callable[[Any], Any]) -> str:
    return f"{getattr(handler, '__module__', '?')}.{getattr(handler, '__qualname__', repr(handler))}"


def normalize_outgoing(result: Any, incoming: tuple[IncomingEvent, ...]) -> list[OutgoingEvent]:
    """Check an ``on_publish`` result against PROTOCOL §6.3 and return it in order.

    Raises:
        HandlerError: not a list, an item without a known id, or a repeated id.
    """
    if result is None:
        return [OutgoingEvent(event.id, event.payload) for event in incoming]
    if not isinstance(result, list | tuple):
        raise HandlerError("on_publish must return a list of events or None")
    known = {event.id for event in incoming}
    seen: set[str] = set()
    outgoing: list[OutgoingEvent] = []
    for item in result:
        if item is None:
            continue
        if isinstance(item, IncomingEvent):
            # AppSync's default handler is `return ctx.events`.
            item = OutgoingEvent(item.id, item.payload)
        elif isinstance(item, Mapping):
            if "id" not in item:
                raise HandlerError("an event returned by on_publish has no id")
            item = OutgoingEvent(item["id"], item.get("payload"), item.get("error"))
        if not isinstance(item, OutgoingEvent):
            raise HandlerError("on_publish returned something that is not an event")
        if item.id not in known:
            raise HandlerError(f"on_publish returned an unknown event id {item.id!r}")
        if item.id in seen:
            raise HandlerError(f"on_publish returned event id {item.id!r} twice")
        seen.add(item.id)
        outgoing.append(item)
    return outgoing
