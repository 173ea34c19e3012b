"""Prometheus metrics of ``realtime``, mirroring AppSync Events' CloudWatch set (PROTOCOL §8.1).

Names are ``realtime_<subsystem>_<name>_<unit>`` (STYLE); counters get
prometheus_client's ``_total`` suffix. The only label is the namespace (never
the channel path), plus a fixed ``transport`` (``http``, ``websocket``,
``server``) on publishes and ``operation`` (``publish``, ``subscribe``) on
handlers. A namespace that may not exist (an error before the lookup, an unknown
name) is labelled ``_unknown``, so clients cannot grow the label set.

=========================================  =========  ==============================================
metric                                     type       AppSync twin
=========================================  =========  ==============================================
realtime_connection_requests_total         counter    ConnectRequests
realtime_connection_success_total          counter    ConnectSuccess
realtime_connection_client_errors_total    counter    ConnectClientError (auth failures)
realtime_connection_server_errors_total    counter    ConnectServerError
realtime_connection_disconnects_total      counter    DisconnectSuccess
realtime_connection_slow_consumer_total     counter    (outbound buffer overflow: closed as too slow)
realtime_connection_active                 gauge      ActiveConnections
realtime_connection_duration_seconds       histogram  ConnectionDuration
realtime_subscription_active               gauge      ActiveSubscriptions
realtime_subscribe_success_total           counter    SubscribeSuccess
realtime_subscribe_client_errors_total     counter    SubscribeClientError
realtime_subscribe_server_errors_total     counter    SubscribeServerError
realtime_unsubscribe_success_total         counter    UnsubscribeSuccess
realtime_history_recoveries_total          counter    (subscribes that asked to recover: ``recovered``)
realtime_history_replayed_total            counter    (publications replayed by recoveries)
realtime_unsubscribe_errors_total          counter    UnsubscribeClientError
realtime_publish_success_total             counter    PublishSuccess (+ HTTP, server code)
realtime_publish_client_errors_total       counter    PublishClientError
realtime_publish_server_errors_total       counter    PublishServerError
realtime_publish_events_failed_total       counter    FailedEvents
realtime_publish_events_dropped_total      counter    DroppedEvents (left out by on_publish)
realtime_broadcast_events_total            counter    SuccessfulEvents
realtime_broadcast_event_size_bytes        histogram  BroadcastEventSize
realtime_broadcast_deliveries_total        counter    BroadcastEventSuccess (one per subscriber)
realtime_handler_invocations_total         counter    Published/SubscribeHandlerInvocations
realtime_handler_errors_total              counter    (handler failed or timed out)
realtime_handler_duration_seconds          histogram  (handler latency)
realtime_http_requests_total               counter    Requests (``/event``)
realtime_http_client_errors_total          counter    4XXError
realtime_http_server_errors_total          counter    5XXError
realtime_http_request_duration_seconds     histogram  Latency
realtime_limit_refused_total               counter    (refused by a limit: operation, reason)
=========================================  =========  ==============================================

``realtime_limit_refused_total`` is labelled by ``operation`` (the front door's
gates, ``quiz.join``, ``event``, ``connect``; and ``publish``, ``subscribe``,
``inbound_events`` in the operations) and ``reason``: ``rate`` (a configured
rate was spent) or ``overload`` (the front door shed the request because the
process was behind), so an operator sees which one fired.

The relay's metrics (``realtime_relay_*``) are listed in :mod:`realtime.operations.relay`.

Without ``prometheus_client`` every call is a no-op. The registry is injectable
(``RealtimeMetrics(registry=...)`` or :meth:`MetricSet.bind`). Several server
processes share one view in prometheus_client's multiprocess mode: set
``PROMETHEUS_MULTIPROC_DIR`` to an empty directory before the processes start
(docs/DEPLOYMENT.md); ``/metrics`` (:mod:`realtime.ops.exposition`) then
aggregates every process's files.

The hot path stays cheap: a fan-out counts its deliveries once per call
(subscribers × events), never per subscriber.
"""

from __future__ import annotations

import atexit
import functools
import os
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from realtime.exceptions import RealtimeError

try:
    import prometheus_client
    from prometheus_client import multiprocess
except ImportError:  # pragma: no cover - exercised by a test that hides the package
    prometheus_client = None  # type: ignore[assignment]  # optional extra: None means not installed

if TYPE_CHECKING:
    from django.http import HttpRequest, HttpResponseBase
    from prometheus_client import CollectorRegistry
    from prometheus_client.registry import Collector

UNKNOWN_NAMESPACE = "_unknown"
# Handlers are bounded by HANDLER_TIMEOUT (5 s by default); HTTP requests are fast.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
SIZE_BUCKETS = (64, 256, 1024, 4096, 16384, 65536, 131072, 245760)
DURATION_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)


def multiprocess_dir() -> str | None:
    """The directory of prometheus_client's multiprocess mode, if it is on."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or os.environ.get("prometheus_multiproc_dir")


class CounterMetric(Protocol):
    """What is called on a counter: prometheus_client's ``Counter``, or the no-op."""

    def labels(self, *labelvalues: str) -> CounterMetric: ...
    def inc(self, amount: float = 1) -> None: ...


class GaugeMetric(Protocol):
    """What is called on a gauge: prometheus_client's ``Gauge``, or the no-op."""

    def labels(self, *labelvalues: str) -> GaugeMetric: ...
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...


class HistogramMetric(Protocol):
    """What is called on a histogram: prometheus_client's ``Histogram``, or the no-op."""

    def labels(self, *labelvalues: str) -> HistogramMetric: ...
    def observe(self, amount: float) -> None: ...


_C = TypeVar("_C", bound="Collector")


class _Noop:
    """Stands for any metric when prometheus_client is not installed."""

    def labels(self, *args: Any, **kwargs: Any) -> _Noop:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def dec(self, amount: float = 1) -> None:
        pass

    def observe(self, amount: float) -> None:
        pass


NOOP = _Noop()


class CounterChildren:
    """A labelled counter's children, each looked up once: for counts made thousands of times a second.

    prometheus_client's ``labels()`` validates the values and takes a lock on every call.
    """

    __slots__ = ("_metric", "_children")

    def __init__(self, metric: CounterMetric) -> None:
        self._metric = metric
        self._children: dict[str, CounterMetric] = {}

    def __getitem__(self, label: str) -> CounterMetric:
        child = self._children.get(label)
        if child is None:
            child = self._children[label] = self._metric.labels(label)
        return child


class MetricSet:
    """A group of metrics bound to one registry; no-ops without prometheus_client.

    Subclasses list their metrics in :meth:`define`, calling ``counter``,
    ``gauge`` and ``histogram`` with a name, a help text and label names.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        # Stays None only without prometheus_client.
        self.registry: CollectorRegistry | None = None
        self._collectors: list[Collector] = []
        self.bind(registry)

    @property
    def enabled(self) -> bool:
        return prometheus_client is not None

    def bind(self, registry: CollectorRegistry | None = None) -> None:
        """(Re)create every metric in ``registry`` (default: prometheus_client's global one)."""
        if prometheus_client is None:
            self.define()
            return
        # Collectors exist only once a registry was bound, so this skips nothing.
        if self.registry is not None:
            for collector in self._collectors:
                try:
                    self.registry.unregister(collector)
                except KeyError:
                    pass
        self._collectors = []
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self.define()

    def define(self) -> None:
        raise NotImplementedError

    def _keep(self, metric: _C) -> _C:
        self._collectors.append(metric)
        return metric

    def counter(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> CounterMetric:
        if prometheus_client is None:
            return NOOP
        return self._keep(prometheus_client.Counter(name, doc, labels, registry=self.registry))

    def gauge(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> GaugeMetric:
        if prometheus_client is None:
            return NOOP
        # livesum: with several processes, the sum over the processes alive now.
        return self._keep(
            prometheus_client.Gauge(name, doc, labels, registry=self.registry, multiprocess_mode="livesum")
        )

    def histogram(
        self, name: str, doc: str, labels: tuple[str, ...], buckets: tuple[float, ...]
    ) -> HistogramMetric:
        if prometheus_client is None:
            return NOOP
        return self._keep(
            prometheus_client.Histogram(name, doc, labels, registry=self.registry, buckets=buckets)
        )


def namespace_of(channel: object) -> str:
    """The first segment of a channel path as a client sent it (may name no namespace)."""
    if not isinstance(channel, str):
        return ""
    return channel.lstrip("/").partition("/")[0]


def known_namespace(name: str) -> str:
    """``name`` if this process knows it as an existing namespace, else ``_unknown``."""
    from realtime.store.selectors import namespace_cache

    hit, config = namespace_cache.get(name)
    return name if hit and config is not None else UNKNOWN_NAMESPACE


def _is_server_error(error: BaseException | None) -> bool:
    return not isinstance(error, RealtimeError) or error.http_status >= 500


class RealtimeMetrics(MetricSet):
    """The metrics of the realtime endpoints, and the calls that move them.

    ``totals`` keeps plain per-process sums of the same events for the live
    dashboard (:mod:`realtime.ops.dashboard`), with or without prometheus_client.
    """

    def define(self) -> None:
        ns = ("namespace",)
        self.totals: Tally[tuple[str, str]] = Tally()
        c, g, h = self.counter, self.gauge, self.histogram
        self.connect_requests = c("realtime_connection_requests", "WebSocket connection attempts.")
        self.connect_success = c("realtime_connection_success", "WebSocket connections authorized.")
        self.connect_client_errors = c(
            "realtime_connection_client_errors", "Connections refused: authorization failed."
        )
        self.connect_server_errors = c(
            "realtime_connection_server_errors", "Connections refused: a server-side failure."
        )
        self.disconnects = c("realtime_connection_disconnects", "Authorized connections that ended.")
        self.connect_writers = c(
            "realtime_connection_writer",
            "Authorized connections by how their frames are written: straight to the server's "
            "transport (daphne, uvicorn-websockets, uvicorn-websockets-sansio) or through ASGI send (asgi).",
            ("writer",),
        )
        self.slow_consumers = c(
            "realtime_connection_slow_consumer",
            "Connections closed because their outbound buffer overflowed.",
        )
        self.connections_active = g("realtime_connection_active", "Open, authorized WebSocket connections.")
        self.connections_ended = c(
            "realtime_connection_ended_by_server",
            "Connections the server closed: access revoked or expired, maximum age reached.",
            ("cause",),
        )
        self.connection_duration = h(
            "realtime_connection_duration_seconds",
            "Lifetime of authorized connections.",
            (),
            DURATION_BUCKETS,
        )
        self.subscriptions_active = g("realtime_subscription_active", "Live subscriptions.", ns)
        self.presence_watchers = g(
            "realtime_presence_watchers", "Subscriptions to presence channels (/$presence/...).", ns
        )
        self.subscribe_success = c("realtime_subscribe_success", "Subscriptions started.", ns)
        self.subscribe_client_errors = c(
            "realtime_subscribe_client_errors", "Subscribes refused (bad channel, unauthorized, ...).", ns
        )
        self.subscribe_server_errors = c("realtime_subscribe_server_errors", "Subscribes that failed.", ns)
        self.unsubscribe_success = c("realtime_unsubscribe_success", "Subscriptions stopped.", ns)
        self.history_recoveries = c(
            "realtime_history_recoveries",
            "Subscribes that recovered from a position.",
            ("namespace", "recovered"),
        )
        self.history_replayed = c("realtime_history_replayed", "Publications replayed by recoveries.", ns)
        self.unsubscribe_errors = c("realtime_unsubscribe_errors", "Unsubscribes of an unknown id.", ns)
        pub = ("namespace", "transport")
        self.publish_success = c("realtime_publish_success", "Publish requests accepted.", pub)
        self.publish_client_errors = c("realtime_publish_client_errors", "Publish requests refused.", pub)
        self.publish_server_errors = c("realtime_publish_server_errors", "Publish requests that failed.", pub)
        self.events_failed = c(
            "realtime_publish_events_failed",
            "Events reported in 'failed' (not JSON, too large, handler).",
            ns,
        )
        self.events_dropped = c(
            "realtime_publish_events_dropped", "Events accepted but left out by an on_publish handler.", ns
        )
        self.broadcast_events = c("realtime_broadcast_events", "Events submitted for broadcast.", ns)
        self.broadcast_size = h(
            "realtime_broadcast_event_size_bytes", "Size of each broadcast event.", ns, SIZE_BUCKETS
        )
        self.deliveries = c("realtime_broadcast_deliveries", "Event frames queued for local subscribers.", ns)
        # Counted once per fan-out and once per connect: thousands a second in a storm.
        self._deliveries_by_namespace = CounterChildren(self.deliveries)
        self._connects_by_writer = CounterChildren(self.connect_writers)
        op = ("namespace", "operation")
        self.handler_invocations = c("realtime_handler_invocations", "Handler calls.", op)
        self.handler_errors = c("realtime_handler_errors", "Handler calls that failed or timed out.", op)
        self.handler_duration = h(
            "realtime_handler_duration_seconds", "Handler latency.", op, LATENCY_BUCKETS
        )
        self.http_requests = c("realtime_http_requests", "Requests to POST /event.")
        self.http_client_errors = c("realtime_http_client_errors", "POST /event answered 4xx.")
        self.http_server_errors = c("realtime_http_server_errors", "POST /event answered 5xx.")
        self.http_duration = h(
            "realtime_http_request_duration_seconds", "Latency of POST /event.", (), LATENCY_BUCKETS
        )
        self.limit_refusals = c(
            "realtime_limit_refused",
            "Requests and operations refused by a limit, by operation and reason (rate, overload).",
            ("operation", "reason"),
        )

    # -- connections -----------------------------------------------------------

    def connect_requested(self) -> None:
        self.connect_requests.inc()

    def connect_failed(self, error: BaseException | None) -> None:
        """A connection refused; ``error`` is what refused it (``None``: unexpected)."""
        if _is_server_error(error):
            self.connect_server_errors.inc()
        else:
            self.connect_client_errors.inc()
        self.totals["connect_errors", ""] += 1

    def connected(self, writer: str = "asgi") -> float:
        """A connection authorized; returns its start time for :meth:`disconnected`."""
        self.connect_success.inc()
        self._connects_by_writer[writer].inc()
        self.connections_active.inc()
        self.totals["connects", ""] += 1
        self.totals["connections", ""] += 1
        return time.monotonic()

    def disconnected(self, started: float | None, subscription_keys: Iterable[str]) -> None:
        """An authorized connection ended, taking its subscriptions (keys ``ns/...``) with it."""
        if started is None:
            return
        self.disconnects.inc()
        self.connections_active.dec()
        self.connection_duration.observe(time.monotonic() - started)
        self.totals["disconnects", ""] += 1
        self.totals["connections", ""] -= 1
        for key in subscription_keys:
            self._subscription_gone(key.partition("/")[0])

    def slow_consumer(self) -> None:
        self.slow_consumers.inc()
        self.totals["slow_consumers", ""] += 1

    def ended_by_server(self, cause: str) -> None:
        """The server closed a connection (``cause``: ``revoked`` or ``max_age``)."""
        self.connections_ended.labels(cause).inc()
        self.totals["ended_by_server", ""] += 1

    def watching(self, namespace: str, delta: int) -> None:
        """A subscription to a presence channel of ``namespace`` started (+1) or ended (-1)."""
        self.presence_watchers.labels(namespace).inc(delta)
        self.totals["presence_watchers", namespace] += delta

    # -- subscriptions ---------------------------------------------------------

    def subscribed(self, namespace: str) -> None:
        self.subscribe_success.labels(namespace).inc()
        self.subscriptions_active.labels(namespace).inc()
        self.totals["subscriptions", namespace] += 1

    def recovered(self, namespace: str, recovered: bool, replayed: int) -> None:
        self.history_recoveries.labels(namespace, "true" if recovered else "false").inc()
        self.history_replayed.labels(namespace).inc(replayed)

    def subscribe_failed(self, channel: object, error: BaseException | None) -> None:
        namespace = known_namespace(namespace_of(channel))
        if _is_server_error(error):
            self.subscribe_server_errors.labels(namespace).inc()
        else:
            self.subscribe_client_errors.labels(namespace).inc()
        self.totals["subscribe_errors", namespace] += 1

    def unsubscribed(self, namespace: str) -> None:
        self.unsubscribe_success.labels(namespace).inc()
        self._subscription_gone(namespace)

    def unsubscribe_failed(self) -> None:
        self.unsubscribe_errors.labels(UNKNOWN_NAMESPACE).inc()

    def _subscription_gone(self, namespace: str) -> None:
        self.subscriptions_active.labels(namespace).dec()
        self.totals["subscriptions", namespace] -= 1

    # -- publish and fan-out ---------------------------------------------------

    def published(self, channel: str, transport: str, failed: int) -> None:
        namespace = namespace_of(channel)
        self.publish_success.labels(namespace, transport).inc()
        self.totals["publishes", namespace] += 1
        if failed:
            self.events_failed.labels(namespace).inc(failed)
            self.totals["failed", namespace] += failed

    def publish_failed(self, channel: object, transport: str, error: BaseException | None) -> None:
        namespace = known_namespace(namespace_of(channel))
        if _is_server_error(error):
            self.publish_server_errors.labels(namespace, transport).inc()
        else:
            self.publish_client_errors.labels(namespace, transport).inc()
        self.totals["publish_errors", namespace] += 1

    def dropped(self, namespace: str, count: int) -> None:
        """Events an ``on_publish`` handler left out (accepted, not broadcast)."""
        if count:
            self.events_dropped.labels(namespace).inc(count)
            self.totals["dropped", namespace] += count

    def broadcast(self, namespace: str, events: Iterable[str]) -> None:
        """Events going out (once per publish, whatever the number of subscribers)."""
        count = 0
        size = self.broadcast_size.labels(namespace)
        for event in events:
            size.observe(len(event.encode()))
            count += 1
        self.broadcast_events.labels(namespace).inc(count)
        self.totals["events", namespace] += count

    def delivered(self, key: str, count: int) -> None:
        """``count`` frames queued for local subscribers of ``key`` (``ns/...``): once per fan-out."""
        namespace = key.partition("/")[0]
        self._deliveries_by_namespace[namespace].inc(count)
        self.totals["deliveries", namespace] += count

    # -- handlers and HTTP -----------------------------------------------------

    def handler_called(self, namespace: str, operation: str, seconds: float) -> None:
        operation = operation.lower()
        self.handler_invocations.labels(namespace, operation).inc()
        self.handler_duration.labels(namespace, operation).observe(seconds)

    def handler_failed(self, namespace: str, operation: str) -> None:
        self.handler_errors.labels(namespace, operation.lower()).inc()
        self.totals["handler_errors", namespace] += 1

    def refused(self, operation: str, reason: str) -> None:
        """A limit refused ``operation``: ``reason`` is ``rate`` or ``overload``."""
        self.limit_refusals.labels(operation, reason).inc()
        self.totals["refused", f"{operation}:{reason}"] += 1

    def http_request(self, status: int, seconds: float) -> None:
        self.http_requests.inc()
        self.http_duration.observe(seconds)
        self.totals["http_requests", ""] += 1
        if status >= 500:
            self.http_server_errors.inc()
            self.totals["http_errors", ""] += 1
        elif status >= 400:
            self.http_client_errors.inc()
            self.totals["http_errors", ""] += 1


metrics = RealtimeMetrics()


def instrument_http(
    view: Callable[..., Awaitable[HttpResponseBase]],
) -> Callable[..., Coroutine[Any, Any, HttpResponseBase]]:
    """Wrap the async ``/event`` view: count requests, 4xx, 5xx and latency."""

    @functools.wraps(view)
    async def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        start = time.perf_counter()
        response = await view(request, *args, **kwargs)
        metrics.http_request(response.status_code, time.perf_counter() - start)
        return response

    return wrapper


def _mark_dead() -> None:  # pragma: no cover - runs at interpreter exit
    directory = multiprocess_dir()
    if directory and prometheus_client is not None:
        multiprocess.mark_process_dead(os.getpid(), directory)


if multiprocess_dir():
    # Live gauges (connections, subscriptions) of an exited process stop counting.
    atexit.register(_mark_dead)
