"""The relay: publishes the rows ``realtime.publish_on_commit`` wrote, then deletes them.

:mod:`realtime.operations.on_commit` writes the events of a publication as a
:class:`~realtime.models.PendingPublication` row of the caller's transaction.
The relay (:class:`Relay`) publishes each row through the server publish path
(:func:`realtime.operations.publishing.publish_from_server`) and deletes it once the
publish went through.

Guarantees:

- **At least once.** A row is deleted only after its publish; a crash in
  between publishes it again, with the same identifiers.
- **In order per channel.** A channel's rows go out one after the other in
  ``id`` order; a failed publish stops its channel until the next round.
- **One relay per row.** On PostgreSQL a round locks its rows (``FOR UPDATE
  SKIP LOCKED``) and the channels it serves (a transaction-scoped advisory
  lock), so relays running at once share the work without publishing a row
  twice or overtaking each other on a channel. SQLite serves one process.
- **The key deduplicates.** A write whose key is still pending is ignored.
- **Where the subscribers are.** With a channel layer that reaches every
  process (channels_redis) any relay publishes any row. With one that stays in
  its process (the in-memory default) only the writing process's subscribers
  can receive a row's events. A process whose relay runs names itself on the
  rows it writes (``origin``); any relay takes its own rows and unnamed ones (a
  management command's, a shell's) at once, and another relaying process's
  only after ``REALTIME["RELAY_ADOPT_AFTER"]`` seconds, when their writer is
  gone (a crashed or restarted server).

Identifiers: event ``i`` of a row is identified by its key (a row of one event)
or ``"<key>#<i>"``. Each event carries it in its ``identifier`` field (a
documented extension, PROTOCOL §12), and it is the publish's identifier
(``successful[].identifier``, handlers' ``ctx.events[i].id``): a subscriber
drops a repeat by it.

Failures: a publish the server refuses for good (a 4xx error: an unknown
namespace, a handler's rejection) is logged and its row deleted; anything else
(the channel layer down, a handler that failed or timed out) leaves the row for
the next round, after a backoff.

Wake-ups: a commit in the relay's own process (``transaction.on_commit``), a
``NOTIFY realtime_relay`` from the writing transaction of any process (PostgreSQL;
the relay LISTENs), and otherwise a poll every ``REALTIME["RELAY_POLL"]`` seconds.
Where it runs: ``REALTIME["RELAY"]`` ``"inprocess"`` makes it a background
service of every server process (:mod:`realtime.lifecycle`); ``"external"``
leaves it to ``manage.py realtime_relay``.

=====================================  =========  ================================================
metric                                 type       moves when
=====================================  =========  ================================================
realtime_relay_published_total         counter    a row was published and deleted
realtime_relay_dropped_total           counter    a row's publish was refused for good (logged)
realtime_relay_retries_total           counter    a round left rows behind after a failure
realtime_relay_lag_seconds             histogram  a row was published: its write → its publish
=====================================  =========  ================================================
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import os
import socket
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db.models import Q
from django.utils import timezone

from realtime.conf import realtime_settings
from realtime.delivery.bridge import leaves_process
from realtime.exceptions import RealtimeError
from realtime.models import PendingPublication
from realtime.operations.publishing import publish_from_server
from realtime.ops.metrics import MetricSet

logger = logging.getLogger(__name__)
T = TypeVar("T")

# The lifecycle service's name (registered in realtime.apps).
SERVICE = "relay"
# PostgreSQL: the NOTIFY channel writers signal and relays LISTEN to.
NOTIFY_CHANNEL = "realtime_relay"
# First argument of the relays' advisory locks (one per channel): "RELY".
LOCK_CLASS = 0x52454C59
RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 10.0
# Seconds a cancelled relay waits for its round to end (and so its transaction).
CANCEL_GRACE = 5.0
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)


class RelayMetrics(MetricSet):
    def define(self) -> None:
        self.published = self.counter("realtime_relay_published", "Pending publications published.")
        self.dropped = self.counter("realtime_relay_dropped", "Pending publications refused for good.")
        self.retries = self.counter("realtime_relay_retries", "Relay rounds that left rows after a failure.")
        self.lag = self.histogram(
            "realtime_relay_lag_seconds", "From a publication's write to its publish.", (), LAG_BUCKETS
        )


metrics = RelayMetrics()


def identifiers_for(key: str, count: int) -> list[str]:
    """The identifiers of a row's events: the key itself for one event, ``key#i`` for several."""
    return [key] if count == 1 else [f"{key}#{index}" for index in range(count)]


_origin: tuple[int, str] | None = None


def process_origin() -> str:
    """This process's name on the rows it writes: ``host:pid:token``, new after a fork."""
    global _origin
    pid = os.getpid()
    if _origin is None or _origin[0] != pid:
        _origin = (pid, f"{socket.gethostname()[:60]}:{pid}:{uuid.uuid4().hex[:8]}")
    return _origin[1]


def _adoption_cutoff() -> datetime | None:
    """Rows of other relaying processes written before this are this relay's too; None: every row is.

    See "Where the subscribers are" in the module docstring.
    """
    if leaves_process(get_channel_layer()):
        return None
    return timezone.now() - timedelta(seconds=realtime_settings.relay_adopt_after)


# -- relaying ------------------------------------------------------------------


@dataclass(slots=True)
class Round:
    """What one round of the relay did."""

    published: int = 0
    dropped: int = 0
    # Rows left behind by a failure that may pass (they are retried after a backoff).
    failed: bool = False
    # The round took a full batch: more rows may be waiting.
    full: bool = False
    done: list[int] = field(default_factory=list)


class Relay:
    """Publishes pending rows in rounds; one instance per process (:data:`relay`)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None

    @property
    def origin(self) -> str:
        """What this process writes in ``origin``: its name while its relay runs, else ``""``."""
        return process_origin() if self._loop is not None else ""

    def wake(self) -> None:
        """Rows were committed: look now. Safe from any thread; a no-op where no relay runs."""
        loop, wakeup = self._loop, self._wakeup
        if loop is None or wakeup is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(wakeup.set)
        except RuntimeError:
            pass  # the loop closed meanwhile

    async def run(self) -> None:
        """Relay until cancelled: a round whenever woken, or every ``RELAY_POLL`` seconds."""
        loop = asyncio.get_running_loop()
        wakeup = asyncio.Event()
        self._loop, self._wakeup = loop, wakeup
        listener = loop.create_task(self._listen()) if _locks_rows() else None
        delay = RETRY_DELAY
        try:
            async with _RelayThread() as thread:
                while True:
                    wakeup.clear()
                    outcome = await self._round(thread)
                    if outcome.failed:
                        # Wake-ups wait: during an outage every commit would retry at once.
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, MAX_RETRY_DELAY)
                        continue
                    delay = RETRY_DELAY
                    if outcome.full:
                        continue
                    await _woken(wakeup, realtime_settings.relay_poll)
        finally:
            if self._loop is loop:
                self._loop = self._wakeup = None
            if listener is not None:
                listener.cancel()

    async def drain(self) -> Round:
        """Relay rounds until nothing is left or a round fails; returns the totals.

        For ``manage.py realtime_relay --once`` and tests.
        """
        total = Round()
        async with _RelayThread() as thread:
            while True:
                outcome = await self._round(thread)
                total.published += outcome.published
                total.dropped += outcome.dropped
                total.failed = outcome.failed
                if outcome.failed or not outcome.full:
                    return total

    async def _round(self, thread: _RelayThread) -> Round:
        """Take up to ``RELAY_BATCH`` rows, publish them, delete what went out.

        Never raises but for cancellation: a failure is reported in the result
        (and logged). A cancelled round finishes first, so its transaction ends.
        """
        limit = realtime_settings.relay_batch
        task = asyncio.ensure_future(
            self._locked_round(thread, limit) if _locks_rows() else self._round_unlocked(limit)
        )
        try:
            outcome = await asyncio.shield(task)
        except asyncio.CancelledError:
            await asyncio.wait([task], timeout=CANCEL_GRACE)
            raise
        except DatabaseError as error:
            # The database is away (a restart, a network cut): no bug to trace.
            logger.warning("relay round failed (%s); retrying", error)
            outcome = Round(failed=True)
        except Exception:
            logger.exception("relay round failed")
            outcome = Round(failed=True)
        if outcome.failed:
            metrics.retries.inc()
        return outcome

    async def _round_unlocked(self, limit: int) -> Round:
        """SQLite: one process, one relay: no locks, and no write lock held while the events go out."""
        rows = await _database(lambda: _unlocked_rows(limit))
        if not rows:
            return Round()
        outcome = await self._publish(rows)
        outcome.full = len(rows) >= limit
        if outcome.done:
            await _database(lambda: PendingPublication.objects.filter(pk__in=outcome.done).delete())
        return outcome

    async def _locked_round(self, thread: _RelayThread, limit: int) -> Round:
        """PostgreSQL: the round's rows and channels stay locked until the published rows are deleted.

        The transaction lives on the relay's own thread and connection; the
        events are published on this loop meanwhile.
        """
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(thread.executor, self._locked_round_sync, loop, limit)

    def _locked_round_sync(self, loop: asyncio.AbstractEventLoop, limit: int) -> Round:
        try:
            with transaction.atomic():
                rows = _claim(limit)
                if not rows:
                    return Round()
                # A task of the loop, not async_to_sync: the publish path's own
                # database calls must not run on this thread, inside this
                # transaction (channels' database_sync_to_async closes a
                # connection it finds in one).
                future = asyncio.run_coroutine_threadsafe(self._publish(rows), loop)
                while True:
                    try:
                        outcome = future.result(timeout=1.0)
                        break
                    except concurrent.futures.TimeoutError:
                        if loop.is_closed():
                            raise RuntimeError("the relay's event loop closed during a round") from None
                outcome.full = len(rows) >= limit
                if outcome.done:
                    PendingPublication.objects.filter(pk__in=outcome.done).delete()
                return outcome
        except DatabaseError:
            connections[DEFAULT_DB_ALIAS].close_if_unusable_or_obsolete()
            raise

    async def _publish(self, rows: list[PendingPublication]) -> Round:
        outcome = Round()
        channels: dict[str, list[PendingPublication]] = {}
        for row in rows:
            channels.setdefault(row.channel, []).append(row)

        async def channel_in_order(pending: list[PendingPublication]) -> None:
            for row in pending:
                identifiers = identifiers_for(row.key, len(row.events))
                try:
                    result = await publish_from_server(row.channel, row.events, identifiers=identifiers)
                except RealtimeError as error:
                    if error.http_status >= 500:
                        _log_failure(row, error)
                        outcome.failed = True
                        return
                    logger.error("relay: %s to %s refused for good, dropped: %r", row.key, row.channel, error)
                    outcome.dropped += 1
                    metrics.dropped.inc()
                except Exception as error:
                    _log_failure(row, error)
                    outcome.failed = True
                    return
                else:
                    if result.failed:
                        failed = result.failed
                        logger.warning("relay: %s to %s: events failed: %s", row.key, row.channel, failed)
                    outcome.published += 1
                    metrics.published.inc()
                    metrics.lag.observe(max(0.0, (timezone.now() - row.created_at).total_seconds()))
                outcome.done.append(row.pk)

        await asyncio.gather(*(channel_in_order(pending) for pending in channels.values()))
        return outcome

    async def _listen(self) -> None:
        """PostgreSQL: LISTEN for writers' NOTIFY on a connection of its own; reconnect on failure."""
        import psycopg

        delay = RETRY_DELAY
        while True:
            try:
                params = connections[DEFAULT_DB_ALIAS].get_connection_params()
                # Django's cursor class is for its sync connections.
                params.pop("cursor_factory", None)
                async with await psycopg.AsyncConnection.connect(**params, autocommit=True) as conn:
                    await conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    # Whatever was committed while nobody listened.
                    self.wake()
                    delay = RETRY_DELAY
                    async for _ in conn.notifies():
                        self.wake()
            except asyncio.CancelledError:
                raise
            except Exception as error:
                logger.warning("relay: LISTEN %s failed (%r); polling meanwhile", NOTIFY_CHANNEL, error)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY)


class _RelayThread:
    """PostgreSQL: the relay's one thread (and so its one database connection), closed with it."""

    def __init__(self) -> None:
        self._executor: ThreadPoolExecutor | None = None

    @property
    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="realtime-relay")
        return self._executor

    async def __aenter__(self) -> _RelayThread:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, connections.close_all)
        finally:
            executor.shutdown(wait=False)


async def _database(call: Callable[[], T]) -> T:
    """``call()`` on the process's thread for sync database work, from a context of its own.

    On SQLite that thread is where the other background writers go too, so they
    never meet a locked database. The empty context carries no request's
    thread-sensitive executor and no deadlock guard of the calling task.
    """
    loop = asyncio.get_running_loop()
    return await loop.create_task(sync_to_async(call, thread_sensitive=True)(), context=contextvars.Context())


def _unlocked_rows(limit: int) -> list[PendingPublication]:
    """SQLite: up to ``limit`` rows of this relay, oldest first."""
    rows = PendingPublication.objects.order_by("id")
    cutoff = _adoption_cutoff()
    if cutoff is not None:
        rows = rows.filter(Q(origin__in=("", process_origin())) | Q(created_at__lt=cutoff))
    return list(rows[:limit])


def _claim(limit: int) -> list[PendingPublication]:
    """PostgreSQL: lock up to ``limit`` rows, oldest first, of channels no other relay is serving."""
    table = PendingPublication._meta.db_table
    # The advisory lock is taken per channel as the rows are scanned: a channel
    # another relay holds is skipped whole, so its rows keep their order.
    lock = "pg_try_advisory_xact_lock(%s, hashtext(channel))"
    params: list[Any] = [LOCK_CLASS]
    cutoff = _adoption_cutoff()
    if cutoff is not None:
        # CASE fixes the order of evaluation: no lock on a channel this relay will not serve.
        lock = f"CASE WHEN origin IN ('', %s) OR created_at < %s THEN {lock} ELSE false END"
        params = [process_origin(), cutoff, *params]
    return list(
        PendingPublication.objects.raw(
            f"SELECT * FROM {table} WHERE {lock} ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED",
            [*params, limit],
        )
    )


async def _woken(wakeup: asyncio.Event, seconds: float) -> None:
    """Until ``wakeup`` is set or ``seconds`` pass.

    Not ``asyncio.wait_for``: on Python 3.11 it loses a cancellation that arrives
    as the event is set, and a stopping relay would run on.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await wakeup.wait()


def _log_failure(row: PendingPublication, error: BaseException) -> None:
    logger.warning("relay: %s to %s not published, will retry: %r", row.key, row.channel, error)


def _locks_rows() -> bool:
    """Relays may run at once on this database (PostgreSQL): they lock what they publish."""
    return connections[DEFAULT_DB_ALIAS].features.has_select_for_update_skip_locked


def runs_in_process() -> bool:
    """The server processes relay on the embedded default; ``manage.py realtime_relay`` when scaled out."""
    return realtime_settings.relay == "inprocess"


relay = Relay()
