"""One AppSync Events WebSocket connection (PROTOCOL §3): its session, identity,
subscriptions and outbox.

:class:`Connection` is what the transport drives: :meth:`~Connection.open` on
the upgrade, :meth:`~Connection.handle` for each text frame, and
:meth:`~Connection.closed` once the socket is gone. Frames are parsed by
:mod:`realtime.core.protocol` and dispatched through one table keyed by frame type;
subscribe rules live in :mod:`realtime.core.session`, authorization of a subscribe in
:mod:`realtime.operations.subscribing`, publishing in :mod:`realtime.operations.publishing`. Every
error becomes a frame in one place (:meth:`Connection._reply_error`), as the
``*_error`` of the operation it answers (PROTOCOL §3, §11).

Every frame a connection sends goes through its :class:`~realtime.delivery.outbox.Outbox`,
so acknowledgements, errors and ``data`` frames keep their order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.db import DatabaseError

from realtime import handlers, signals
from realtime.auth import AuthRequest, Identity, Operation, RequestInfo, authorize
from realtime.auth.limits import rate_limiter
from realtime.conf import realtime_settings
from realtime.core import protocol
from realtime.core.paths import parse_channel
from realtime.core.protocol import CloseCode, ServerType
from realtime.core.rates import Gcra
from realtime.core.session import Session, SubscribeDecision
from realtime.delivery.hub import LocalSubscription, hub
from realtime.delivery.outbox import AsgiSend, Outbox
from realtime.exceptions import (
    LimitExceeded,
    MalformedMessage,
    RealtimeError,
    ServiceUnavailable,
    Transport,
    UnknownOperation,
)
from realtime.lifecycle import lifecycle
from realtime.operations.publishing import Publication, publish
from realtime.operations.subscribing import (
    connection_leaving,
    connection_stop,
    presence_member,
    subscribe_authorize,
    subscription_start_with_history,
    subscription_stop,
)
from realtime.ops.logs import bind_connection
from realtime.ops.metrics import metrics
from realtime.presence.connections import connections
from realtime.presence.control import deadlines
from realtime.transport.clients import client_address, client_ip
from realtime.transport.drain import drain
from realtime.transport.frontdoor import ADMITTED
from realtime.transport.gates import CONNECT
from realtime.transport.handshake import (
    SUBPROTOCOL,
    RequestCookies,
    RequestHeaders,
    connect_credentials,
    offered_subprotocols,
)

logger = logging.getLogger(__name__)

# A rejected connection waits this long for the client's first frame (AWS answers
# connection_init with connection_error, PROTOCOL §3.1) before it is told anyway.
REJECT_GRACE_SECONDS = 2.0
GOING_AWAY_REASON = "going away"

# Publishes waiting for the channel layer before they are answered (kept referenced).
_answering: set[asyncio.Task[None]] = set()
# Connections closed after their server stopped serving them (kept referenced).
_closing: set[asyncio.Task[None]] = set()


class Connection:
    """One WebSocket connection, from the upgrade to the close."""

    # Thousands of these live at once: no per-instance __dict__.
    __slots__ = (
        "scope",
        "_send",
        "id",
        "request",
        "credentials",
        "session",
        "subscriptions",
        "identity",
        "rejection",
        "connected_at",
        "outbox",
        "rates",
        # Connection handlers (realtime.handlers): on_connect's data, why it closed,
        # and whether closed() has run (on_disconnect runs exactly once).
        "data",
        "close_cause",
        "ended",
        # The drain (realtime.transport.drain): operations under way, and whether it is leaving.
        "in_flight",
        "leaving",
        "quiet",
    )

    def __init__(self, scope: Mapping[str, Any], send: AsgiSend) -> None:
        self.scope = scope
        self._send = send
        self.id = uuid.uuid4().hex
        raw_headers = scope.get("headers", ())
        # Headers and cookies are read from the scope when asked for, not copied:
        # thousands of connections idle for hours.
        self.request = RequestInfo(
            transport=Transport.WEBSOCKET,
            headers=RequestHeaders(raw_headers),
            source_ip=client_ip(scope) or None,
            scope=scope,
            cookies=RequestCookies(raw_headers),
        )
        # The headers are decoded only if no subprotocol carries the credentials.
        self.credentials = connect_credentials(
            scope.get("subprotocols", ()), self.request.headers, scope.get("query_string", b"")
        )
        self.session = Session(max_subscriptions=realtime_settings.max_subscriptions_per_connection)
        self.subscriptions: dict[str, LocalSubscription] = {}
        self.identity: Identity | None = None
        # Set when the connection was refused: it is told so, then closed.
        self.rejection: RealtimeError | None = None
        self.connected_at: float | None = None
        self.outbox = Outbox(
            send,
            limit=realtime_settings.outbound_buffer_size,
            on_overflow=self._overflowed,
            direct=realtime_settings.direct_writes,
        )
        self.data: dict[str, Any] = {}
        self.close_cause: handlers.CloseCause | None = None
        self.ended = False
        # This connection's publish and subscribe counts, per namespace (realtime.auth.limits).
        self.rates = Gcra(max_keys=64)
        # Frames being handled and publishes awaiting their answer: a draining
        # process closes the socket only once each has been answered.
        self.in_flight = 0
        # Set when the process drains: frames read afterwards are not handled.
        self.leaving = False
        # Made by go_away only (idle connections carry none): set once nothing is in flight.
        self.quiet: asyncio.Event | None = None

    # -- lifecycle -----------------------------------------------------------

    async def open(self) -> None:
        """Authorize the connection (connect auth modes) and accept the upgrade.

        A refusal is never an HTTP-level rejection: Amplify retries that forever.
        The upgrade is accepted and the client hears ``connection_error``
        (PROTOCOL §3.1).
        """
        lifecycle.ensure_started()
        bind_connection(self.id)
        metrics.connect_requested()
        try:
            # The front door, when the site has one, counted this connect already.
            if self.scope.get(ADMITTED) != CONNECT.operation and await rate_limiter.take(
                CONNECT.checks(client_address(self.scope))
            ):
                metrics.refused(CONNECT.operation, "rate")
                raise LimitExceeded("Too many connections right now; retry with backoff.")
            self.identity = await authorize(
                modes=realtime_settings.connection_auth_modes,
                credentials=self.credentials,
                auth=AuthRequest(operation=Operation.CONNECT, request=self.request),
            )
            self.data = await handlers.connection_opened(self.id, self.identity, self.request)
        except RealtimeError as error:
            self.rejection = error
            metrics.connect_failed(error)
        except Exception as error:
            logger.exception("connect authorization failed unexpectedly")
            self.rejection = ServiceUnavailable()
            metrics.connect_failed(error)

        # Browsers fail the handshake if they offered subprotocols and none is chosen.
        offered = offered_subprotocols(self.scope.get("subprotocols", ()))
        await self._send(
            {"type": "websocket.accept", "subprotocol": SUBPROTOCOL if SUBPROTOCOL in offered else None}
        )
        self.outbox.start()
        if self.rejection is not None:
            asyncio.get_running_loop().call_later(REJECT_GRACE_SECONDS, self._reject)
            return
        hub.connect(self.outbox)
        connections.add(self)
        deadlines.watch(self)
        self.connected_at = metrics.connected(self.outbox.server)
        if drain.active:
            # Accepted just before the process stopped listening: sent elsewhere like the rest.
            drain.send_away(self)
        # A server that stops serving the socket (process shutdown) cancels the task
        # that reads it, and websocket.disconnect never comes: close it then.
        task = asyncio.current_task()
        if task is not None:
            task.add_done_callback(self._served)
        if signals.client_connected.receivers:
            await signals.client_connected.asend(
                signals.SENDER, connection_id=self.id, identity=self.identity
            )

    def _reject(self) -> None:
        if self.rejection is None or self.outbox.closed:
            return
        self.outbox.offer(
            protocol.connection_error([self.rejection.to_error(Transport.WEBSOCKET, with_code=True)])
        )
        # AWS closes with a normal code even after a failure (PROTOCOL §3.1).
        self.outbox.close(CloseCode.NORMAL)

    def _overflowed(self) -> None:
        # Called from the publisher's task: name this connection, not the publisher's.
        logger.info("closing a websocket whose outbound buffer overflowed", extra={"connection_id": self.id})
        self.close_cause = handlers.CloseCause.SLOW_CONSUMER
        metrics.slow_consumer()

    def close(self, code: int, cause: handlers.CloseCause, reason: str = "") -> None:
        """Close from the server's side after what is queued; ``cause`` is what on_disconnect hears."""
        if self.outbox.closed:
            return
        self.close_cause = cause
        self.outbox.close(code, reason)

    def end(self, error: RealtimeError, code: int, cause: handlers.CloseCause) -> None:
        """Tell the client why (an ``error`` frame), then close (server-side control, PROTOCOL §12)."""
        if self.outbox.closed:
            return
        self.outbox.offer(protocol.error_frame(ServerType.ERROR, None, [error.to_error(Transport.WEBSOCKET)]))
        # A close frame's reason holds at most 123 bytes (RFC 6455 §5.5); the error frame has it all.
        reason = (error.message or "").encode()[:123].decode(errors="ignore")
        self.close(code, cause, reason)

    async def drop_channel(self, channel: str, error: RealtimeError) -> int:
        """End this connection's subscriptions to ``channel`` (canonical path), each with a
        ``subscribe_error`` naming ``error``; returns how many ended."""
        ended = [sub_id for sub_id, path in self.session.subscriptions.items() if path.path == channel]
        for sub_id in ended:
            await self._subscription_ended(sub_id)
            metrics.unsubscribed(self.session.remove(sub_id).namespace)
            subscription_stop(self.subscriptions.pop(sub_id))
            self.outbox.offer(
                protocol.error_frame(
                    ServerType.SUBSCRIBE_ERROR, sub_id, [error.to_error(Transport.WEBSOCKET)]
                )
            )
        return len(ended)

    def _served(self, task: asyncio.Task[None]) -> None:
        if self.ended:
            return
        self.close_cause = self.close_cause or handlers.CloseCause.SHUTDOWN
        try:
            closing = asyncio.get_running_loop().create_task(self.closed(None))
        except RuntimeError:  # the loop is gone with the process: nothing can run
            return
        _closing.add(closing)
        closing.add_done_callback(_closing.discard)

    async def closed(self, code: int | None) -> None:
        """The socket is gone: forget its subscriptions and tell whoever listens (once)."""
        if self.ended:
            return
        self.ended = True
        connections.remove(self)
        connection_stop(self.outbox, self.subscriptions.values())
        self.outbox.stop()
        if self.rejection is not None:
            return
        metrics.disconnected(self.connected_at, (s.key for s in self.subscriptions.values()))
        for subscription_id in list(self.subscriptions):
            await self._subscription_ended(subscription_id)
        if signals.client_disconnected.receivers:
            await signals.client_disconnected.asend(
                signals.SENDER, connection_id=self.id, identity=self.identity, code=code
            )
        await handlers.connection_ended(
            handlers.connection_context(
                handlers.DISCONNECT_OPERATION,
                self.id,
                self.identity,
                self.request,
                self.data,
                close_code=code,
                close_cause=self.close_cause or handlers.CloseCause.CLIENT,
            )
        )

    async def _subscription_ended(self, subscription_id: str) -> None:
        channel = self.session.subscriptions.get(subscription_id)
        if channel is not None and signals.subscription_ended.receivers:
            await signals.subscription_ended.asend(
                signals.SENDER,
                connection_id=self.id,
                subscription_id=subscription_id,
                channel=channel.path,
                namespace=channel.namespace,
            )

    # -- frames --------------------------------------------------------------

    async def handle(self, text: str | None) -> None:
        """Handle one client frame (``None`` for a binary one); never raises.

        Once the connection is leaving (its process drains) a frame is not
        handled at all: every operation the client sent either was answered
        before the going-away close, or never ran and may be sent again.
        """
        if self.leaving:
            return
        self.in_flight += 1
        try:
            await self._handle(text)
        finally:
            self._done_one()

    async def go_away(self, *, within: float) -> None:
        """Close with 1001 "going away" once the operations under way are answered.

        Waits at most ``within`` seconds for them; the positions of its history
        subscriptions are stored first, so the client resumes on another process
        right after the last event this one sent.
        """
        if self.leaving or self.outbox.closed:
            return
        self.leaving = True
        if self.in_flight:
            self.quiet = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await self.quiet.wait()
        await connection_leaving(self.outbox, self.subscriptions.values())
        self.close(CloseCode.GOING_AWAY, handlers.CloseCause.SHUTDOWN, GOING_AWAY_REASON)

    async def _handle(self, text: str | None) -> None:
        if self.outbox.closed:
            return
        if self.rejection is not None:
            self._reject()
            return
        try:
            if text is not None and len(text) > realtime_settings.max_message_size:
                raise protocol.bind_operation(MalformedMessage("Message is too large"), None, None)
            frame = protocol.parse(text)
        except RealtimeError as error:
            # parse() bound the operation and id it could read.
            self._reply_error(error)
            return
        try:
            await _DISPATCH[type(frame)](self, frame)
        except Exception as exc:
            self._reply_error(_answer_for(exc, frame))

    def _credentials(self, authorization: Mapping[str, str] | None) -> Mapping[str, str] | None:
        # An operation may carry its own authorization (PROTOCOL §3.4); without
        # one, the connection's credentials stand for it.
        return authorization if authorization is not None else self.credentials

    async def _on_connection_init(self, frame: protocol.ConnectionInit) -> None:
        self.session.initialized = True
        self.outbox.offer(protocol.connection_ack(realtime_settings.connection_timeout_ms))
        # Amplify's keep-alive clock may already be running: a ka right after the
        # ack keeps a new connection alive (PROTOCOL §10).
        self.outbox.offer(protocol.KEEPALIVE)

    async def _on_subscribe(self, frame: protocol.Subscribe) -> None:
        try:
            channel = parse_channel(frame.channel, allow_wildcard=True)
            if self.session.check_subscribe(frame.id, channel) is SubscribeDecision.REPEAT:
                self.outbox.offer(protocol.success(ServerType.SUBSCRIBE_SUCCESS, frame.id))
                return
            identity = await subscribe_authorize(
                channel=channel,
                raw_channel=frame.channel,
                credentials=self._credentials(frame.authorization),
                request=self.request,
                connection_rates=self.rates,
            )
            # A second subscribe with this id may have completed while we awaited.
            if self.session.check_subscribe(frame.id, channel) is SubscribeDecision.REPEAT:
                self.outbox.offer(protocol.success(ServerType.SUBSCRIBE_SUCCESS, frame.id))
                return
            member = await presence_member(
                channel=channel, identity=identity, request=self.request, connection_id=self.id
            )
            subscription = LocalSubscription.create(self.outbox, frame.id, channel)
            started = await subscription_start_with_history(
                subscription,
                channel=channel,
                subscription_id=frame.id,
                identity=identity,
                since=frame.since,
                member=member,
            )
        except Exception as error:
            metrics.subscribe_failed(frame.channel, error)
            raise
        if self.outbox.closed:
            subscription_stop(subscription)
            return
        self.session.add(frame.id, channel)
        self.subscriptions[frame.id] = subscription
        metrics.subscribed(channel.namespace)
        started.acknowledge(frame.id, self.outbox)
        if signals.subscription_started.receivers:
            await signals.subscription_started.asend(
                signals.SENDER,
                connection_id=self.id,
                subscription_id=frame.id,
                channel=channel.path,
                namespace=channel.namespace,
                identity=identity,
            )

    async def _on_unsubscribe(self, frame: protocol.Unsubscribe) -> None:
        if frame.id not in self.session.subscriptions:
            metrics.unsubscribe_failed()
            raise UnknownOperation(frame.id)
        await self._subscription_ended(frame.id)
        metrics.unsubscribed(self.session.remove(frame.id).namespace)
        subscription_stop(self.subscriptions.pop(frame.id))
        self.outbox.offer(protocol.success(ServerType.UNSUBSCRIBE_SUCCESS, frame.id))

    async def _on_publish(self, frame: protocol.Publish) -> None:
        publication = await publish(
            channel=frame.channel,
            events=frame.events,
            credentials=self._credentials(frame.authorization),
            request=self.request,
            connection_rates=self.rates,
        )
        if publication.sent is None:
            # Delivered already (one process): answer in line.
            await self._answer_publish(frame, publication)
            return
        # The events travel through the channel layer: read the next frame
        # meanwhile, so pipelined publishes share a layer round trip. Their order
        # is the bridge's (it took them in frame order); the answer follows.
        task = asyncio.get_running_loop().create_task(self._answer_publish(frame, publication))
        self.in_flight += 1
        _answering.add(task)
        task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        _answering.discard(task)
        self._done_one()

    def _done_one(self) -> None:
        self.in_flight -= 1
        if not self.in_flight and self.quiet is not None:
            self.quiet.set()

    async def _answer_publish(self, frame: protocol.Publish, publication: Publication) -> None:
        try:
            result = await publication.completed()
        except Exception as exc:
            # An after_publish receiver may meet a database outage too.
            self._reply_error(_answer_for(exc, frame))
        else:
            self.outbox.offer(protocol.publish_success(frame.id, result.successful, result.failed))

    def _reply_error(self, error: RealtimeError) -> None:
        """The one place a WebSocket error becomes a frame (PROTOCOL §3, §11)."""
        operation, op_id = protocol.error_operation(error)
        kind = protocol.ERROR_REPLY.get(operation, ServerType.ERROR) if operation else ServerType.ERROR
        if kind is not ServerType.ERROR and op_id is None:
            kind = ServerType.ERROR
        self.outbox.offer(protocol.error_frame(kind, op_id, [error.to_error(Transport.WEBSOCKET)]))


def _answer_for(exc: Exception, frame: protocol.ClientMessage) -> RealtimeError:
    """The error that answers a frame whose handling raised ``exc``, bound to its operation.

    A :class:`RealtimeError` answers as itself; a database outage is passing, so
    the client may retry (``ServiceUnavailable``) and the connection stays up;
    anything else is a bug, logged with its traceback, and an ``InternalFailure``.
    """
    if isinstance(exc, RealtimeError):
        error = exc
    elif isinstance(exc, DatabaseError):
        logger.warning("websocket %s failed, database unavailable: %s", frame.operation, exc)
        error = ServiceUnavailable()
    else:
        logger.error("unexpected error while handling a websocket %s", frame.operation, exc_info=exc)
        error = RealtimeError()
    return protocol.bind_frame(error, frame)


# One handler per client frame type (PROTOCOL §3.2-§3.8).
_DISPATCH: dict[type[protocol.ClientMessage], Callable[[Connection, Any], Awaitable[None]]] = {
    protocol.ConnectionInit: Connection._on_connection_init,
    protocol.Subscribe: Connection._on_subscribe,
    protocol.Unsubscribe: Connection._on_unsubscribe,
    protocol.Publish: Connection._on_publish,
}


async def keepalive_run() -> None:
    """The background service that sends ``ka`` to every connection (PROTOCOL §3.3).

    One timer for every connection of the process, not one per connection.
    """
    while True:
        await asyncio.sleep(realtime_settings.keepalive_interval)
        for outbox in hub.outboxes():
            outbox.offer(protocol.KEEPALIVE)
