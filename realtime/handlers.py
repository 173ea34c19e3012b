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
    "HandlerContext",
    "IncomingEvent",
    "OutgoingEvent",
    "Reject",
    "Unauthorized",
    "after_publish",
    "on_publish",
    "on_subscribe",
]

# Raised by handlers to refuse the whole operation with a message of their own.
Reject = HandlerRejected


class HandlerKind(StrEnum):
    PUBLISH = "publish"
    SUBSCRIBE = "subscribe"
    AFTER_PUBLISH = "after_publish"


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

_registry: dict[HandlerKind, dict[str, Handler]] = {kind: {} for kind in HandlerKind}


def _register(kind: HandlerKind, name: str) -> Callable[[F], F]:
    def decorator(fn: F) -> F:
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


def registered_names(kind: HandlerKind) -> list[str]:
    return sorted(_registry[kind])


def unregister(kind: HandlerKind, name: str) -> None:
    """Remove a registration (tests, and apps that swap handlers)."""
    _registry[kind].pop(name, None)


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
        logger.error("%s handler %s for %s timed out", ctx.operation, _name(handler), ctx.channel.path)
        metrics.handler_failed(ctx.namespace, ctx.operation)
        raise HandlerTimeout() from None
    except Exception:
        logger.exception("%s handler %s for %s failed", ctx.operation, _name(handler), ctx.channel.path)
        metrics.handler_failed(ctx.namespace, ctx.operation)
        raise HandlerError() from None
    finally:
        metrics.handler_called(ctx.namespace, ctx.operation, time.perf_counter() - start)


def _name(handler: Handler) -> str:
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
