"""The ``/event/realtime`` WebSocket endpoint: transport glue only (DESIGN §4).

Frames are parsed by :mod:`realtime.protocol`, subscription rules live in
:mod:`realtime.session`, authorization in :mod:`realtime.auth`, publishing in
:mod:`realtime.broker` and delivery in :mod:`realtime.hub`. This module turns
their results and exceptions into frames, in one place (:meth:`_reply_error`).

Frames of one connection are handled one at a time, in order, so a publisher's
events keep their order and an unsubscribe never overtakes its subscribe.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from channels.consumer import AsyncConsumer
from channels.exceptions import StopConsumer
from django.db import DatabaseError

from . import protocol, signals
from .auth import AuthRequest, Identity, Operation, RequestInfo, authorize
from .broker import PublishInFlight, start_publish, subscription_authorize
from .conf import realtime_settings
from .exceptions import (
    LimitExceeded,
    MalformedMessage,
    RealtimeError,
    ServiceUnavailable,
    Transport,
    UnknownOperation,
)
from .handshake import (
    SUBPROTOCOL,
    connect_credentials,
    offered_subprotocols,
    request_cookies,
    request_headers,
)
from .hub import LocalSubscription, hub
from .logs import bind_connection
from .metrics import metrics
from .outbox import Outbox
from .paths import parse_channel
from .protocol import ClientType, CloseCode, ServerType
from .ratelimit import TokenBucket
from .session import Session, SubscribeDecision

logger = logging.getLogger(__name__)


class ConnectLimiter:
    """This process's budget of new connections (``REALTIME["CONNECT_RATE"]``)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._rate: str | None = None
        self._bucket: TokenBucket | None = None

    def allow(self) -> bool:
        rate = realtime_settings.connect_rate
        if rate is None:
            return True
        if rate != self._rate or self._bucket is None:
            self._rate, self._bucket = rate, TokenBucket.from_rate(rate)
        return self._bucket.allow(time.monotonic())


connect_limiter = ConnectLimiter()

# A rejected connection waits this long for the client's first frame (AWS answers
# connection_init with connection_error, PROTOCOL §3.1) before it is told anyway.
REJECT_GRACE_SECONDS = 2.0

# Frames one connection may have handled back to back before others get a turn.
FRAMES_PER_TURN = 100

# Publishes waiting for the channel layer before they are answered (kept referenced).
_answering: set[asyncio.Task[None]] = set()


class RealtimeConsumer(AsyncConsumer):
    """One AppSync Events WebSocket connection."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Channels would give every connection its own layer channel and receive
        # loop; delivery goes through the per-process hub instead (DESIGN §5).
        # Frames are read straight from ``receive`` rather than through
        # await_many_dispatch, which wraps every read in a new task: when a burst
        # of frames is waiting, each read returns without yielding, so the burst
        # is fanned out in one loop pass and each subscriber's outbox writes it
        # in one flush. A yield every FRAMES_PER_TURN frames keeps one client's
        # backlog from holding the loop.
        self.scope = scope
        self.base_send = send
        handled = 0
        try:
            while True:
                await self.dispatch(await receive())
                handled += 1
                if handled % FRAMES_PER_TURN == 0:
                    await asyncio.sleep(0)
        except StopConsumer:
            pass

    async def dispatch(self, message: dict[str, Any]) -> None:
        # No per-frame close_old_connections() thread hop: the selectors that
        # touch the database run through database_sync_to_async themselves.
        handler = getattr(self, message["type"].replace(".", "_"), None)
        if handler is not None:
            await handler(message)

    # -- lifecycle -----------------------------------------------------------

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        scope = self.scope
        headers = request_headers(scope.get("headers", ()))
        client = scope.get("client")
        self.request = RequestInfo(
            transport=Transport.WEBSOCKET,
            headers=headers,
            source_ip=client[0] if client else None,
            scope=scope,
            cookies=request_cookies(scope.get("headers", ())),
        )
        self.credentials = connect_credentials(
            scope.get("subprotocols", ()), headers, scope.get("query_string", b"")
        )
        self.session = Session(max_subscriptions=realtime_settings.max_subscriptions_per_connection)
        self.subscriptions: dict[str, LocalSubscription] = {}
        self.rejection: RealtimeError | None = None
        self.identity: Identity | None = None
        self.connection_id = uuid.uuid4().hex
        bind_connection(self.connection_id)
        metrics.connect_requested()
        self.outbox = Outbox(
            self.base_send, limit=realtime_settings.outbound_buffer_size, on_overflow=self._overflowed
        )

        try:
            if not connect_limiter.allow():
                raise LimitExceeded("Too many connections right now; retry with backoff.")
            self.identity = await authorize(
                modes=realtime_settings.connection_auth_modes,
                credentials=self.credentials,
                auth=AuthRequest(operation=Operation.CONNECT, request=self.request),
            )
        except RealtimeError as error:
            # Never refuse the upgrade: Amplify retries an HTTP-level refusal
            # forever. Accept, then answer with connection_error (PROTOCOL §3.1).
            self.rejection = error
            metrics.connect_failed(error)
        except Exception as error:
            logger.exception("connect authorization failed unexpectedly")
            self.rejection = ServiceUnavailable()
            metrics.connect_failed(error)

        # Browsers fail the handshake if they offered subprotocols and none is chosen.
        offered = offered_subprotocols(scope.get("subprotocols", ()))
        await self.base_send(
            {"type": "websocket.accept", "subprotocol": SUBPROTOCOL if SUBPROTOCOL in offered else None}
        )
        self.outbox.start()
        if self.rejection is not None:
            asyncio.get_running_loop().call_later(REJECT_GRACE_SECONDS, self._reject)
            return
        await hub.connect(self.outbox)
        self.connected_at = metrics.connected()
        if signals.client_connected.receivers:
            await signals.client_connected.asend(
                signals.SENDER, connection_id=self.connection_id, identity=self.identity
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
        logger.info(
            "closing a websocket whose outbound buffer overflowed",
            extra={"connection_id": self.connection_id},
        )
        metrics.slow_consumer()

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        outbox = getattr(self, "outbox", None)
        if outbox is not None:
            hub.disconnect(outbox, self.subscriptions.values())
            outbox.stop()
            if self.rejection is None:
                metrics.disconnected(
                    getattr(self, "connected_at", None), (s.key for s in self.subscriptions.values())
                )
                for subscription_id in list(self.subscriptions):
                    await self._subscription_ended(subscription_id)
                if signals.client_disconnected.receivers:
                    await signals.client_disconnected.asend(
                        signals.SENDER,
                        connection_id=self.connection_id,
                        identity=self.identity,
                        code=message.get("code"),
                    )
        raise StopConsumer()

    async def _subscription_ended(self, subscription_id: str) -> None:
        channel = self.session.subscriptions.get(subscription_id)
        if channel is not None and signals.subscription_ended.receivers:
            await signals.subscription_ended.asend(
                signals.SENDER,
                connection_id=self.connection_id,
                subscription_id=subscription_id,
                channel=channel.path,
                namespace=channel.namespace,
            )

    # -- frames --------------------------------------------------------------

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        if self.outbox.closed:
            return
        if self.rejection is not None:
            self._reject()
            return
        text = message.get("text")
        try:
            if text is not None and len(text) > realtime_settings.max_message_size:
                raise protocol.bind_operation(MalformedMessage("Message is too large"), None, None)
            frame = protocol.parse(text)
            if isinstance(frame, protocol.ConnectionInit):
                self.session.initialized = True
                self.outbox.offer(protocol.connection_ack(realtime_settings.connection_timeout_ms))
                # Amplify's keep-alive clock may already be running: a ka right
                # after the ack keeps a new connection alive (PROTOCOL §10).
                self.outbox.offer(protocol.KEEPALIVE)
            elif isinstance(frame, protocol.Subscribe):
                await self._subscribe(frame)
            elif isinstance(frame, protocol.Unsubscribe):
                await self._unsubscribe(frame)
            else:
                await self._publish(frame)
        except RealtimeError as error:
            self._reply_error(error)
        except DatabaseError as exc:
            # A passing outage: the client may retry; the connection stays up.
            logger.warning("websocket operation failed, database unavailable: %s", exc)
            self._reply_error(protocol.bind_operation(ServiceUnavailable(), *_operation_of(text)))
        except Exception:
            logger.exception("unexpected error while handling a websocket frame")
            self._reply_error(protocol.bind_operation(RealtimeError(), *_operation_of(text)))

    def _credentials(self, authorization: Any) -> Any:
        # An operation may carry its own authorization (PROTOCOL §3.4); without
        # one, the connection's credentials stand for it.
        return authorization if authorization is not None else self.credentials

    async def _subscribe(self, frame: protocol.Subscribe) -> None:
        try:
            channel = parse_channel(frame.channel, allow_wildcard=True)
            if self.session.check_subscribe(frame.id, channel) is SubscribeDecision.REPEAT:
                self.outbox.offer(protocol.success(ServerType.SUBSCRIBE_SUCCESS, frame.id))
                return
            _, identity = await subscription_authorize(
                channel=channel,
                raw_channel=frame.channel,
                credentials=self._credentials(frame.authorization),
                request=self.request,
            )
            # A second subscribe with this id may have completed while we awaited.
            if self.session.check_subscribe(frame.id, channel) is SubscribeDecision.REPEAT:
                self.outbox.offer(protocol.success(ServerType.SUBSCRIBE_SUCCESS, frame.id))
                return
            subscription = LocalSubscription.create(self.outbox, frame.id, channel)
            await hub.add(subscription)
        except RealtimeError as error:
            metrics.subscribe_failed(frame.channel, error)
            raise protocol.bind_operation(error, ClientType.SUBSCRIBE, frame.id) from None
        except Exception as error:
            metrics.subscribe_failed(frame.channel, error)
            raise
        if self.outbox.closed:
            hub.remove(subscription)
            return
        self.session.add(frame.id, channel)
        self.subscriptions[frame.id] = subscription
        metrics.subscribed(channel.namespace)
        self.outbox.offer(protocol.success(ServerType.SUBSCRIBE_SUCCESS, frame.id))
        if signals.subscription_started.receivers:
            await signals.subscription_started.asend(
                signals.SENDER,
                connection_id=self.connection_id,
                subscription_id=frame.id,
                channel=channel.path,
                namespace=channel.namespace,
                identity=identity,
            )

    async def _unsubscribe(self, frame: protocol.Unsubscribe) -> None:
        if frame.id not in self.session.subscriptions:
            error = UnknownOperation(frame.id)
            metrics.unsubscribe_failed()
            raise protocol.bind_operation(error, ClientType.UNSUBSCRIBE, frame.id)
        await self._subscription_ended(frame.id)
        metrics.unsubscribed(self.session.remove(frame.id).namespace)
        hub.remove(self.subscriptions.pop(frame.id))
        self.outbox.offer(protocol.success(ServerType.UNSUBSCRIBE_SUCCESS, frame.id))

    async def _publish(self, frame: protocol.Publish) -> None:
        try:
            started = await start_publish(
                channel=frame.channel,
                events=frame.events,
                credentials=self._credentials(frame.authorization),
                request=self.request,
            )
        except RealtimeError as error:
            raise protocol.bind_operation(error, ClientType.PUBLISH, frame.id) from None
        if started.sent is None:
            # Delivered already (one process): answer in line.
            await self._answer_publish(frame.id, started)
            return
        # The events travel through the channel layer: read the next frame
        # meanwhile, so pipelined publishes share a layer round trip. Their order
        # is the hub's (it took them in frame order); the answer follows.
        task = asyncio.get_running_loop().create_task(self._answer_publish(frame.id, started))
        _answering.add(task)
        task.add_done_callback(_answering.discard)

    async def _answer_publish(self, frame_id: str, started: PublishInFlight) -> None:
        try:
            result = await started.finish()
        except RealtimeError as error:
            self._reply_error(protocol.bind_operation(error, ClientType.PUBLISH, frame_id))
        except DatabaseError as exc:
            # An after_publish receiver met a passing outage: retryable, as in websocket_receive.
            logger.warning("websocket publish failed, database unavailable: %s", exc)
            self._reply_error(protocol.bind_operation(ServiceUnavailable(), ClientType.PUBLISH, frame_id))
        except Exception:
            logger.exception("unexpected error while finishing a websocket publish")
            self._reply_error(protocol.bind_operation(RealtimeError(), ClientType.PUBLISH, frame_id))
        else:
            self.outbox.offer(protocol.publish_success(frame_id, result.successful, result.failed))

    def _reply_error(self, error: RealtimeError) -> None:
        """The one place a WebSocket error becomes a frame (PROTOCOL §3, §11)."""
        operation, op_id = protocol.error_operation(error)
        kind = protocol.ERROR_REPLY.get(operation, ServerType.ERROR) if operation else ServerType.ERROR
        if kind is not ServerType.ERROR and op_id is None:
            kind = ServerType.ERROR
        self.outbox.offer(protocol.error_frame(kind, op_id, [error.to_error(Transport.WEBSOCKET)]))


def _operation_of(text: str | None) -> tuple[ClientType | None, str | None]:
    """The operation and id of a frame that parsed, for an error raised after parsing."""
    try:
        frame = protocol.parse(text)
    except RealtimeError:
        return None, None
    if isinstance(frame, protocol.Subscribe):
        return ClientType.SUBSCRIBE, frame.id
    if isinstance(frame, protocol.Unsubscribe):
        return ClientType.UNSUBSCRIBE, frame.id
    if isinstance(frame, protocol.Publish):
        return ClientType.PUBLISH, frame.id
    return None, None
