"""Group commit: writes that arrive together share one database call and one transaction.

A crowd answering one question sends a couple of hundred answers a second. Stored
one by one, each costs a thread hop, a transaction and its commit, and the hops
alone saturate a core. :class:`GroupCommit` queues what arrives while the previous
batch is in the database and writes the queue as the next batch, in one call to
``process`` on the database thread. An idle collector writes at once (a batch of
one): batching adds no wait, it only grows with the load.

Each submitter awaits its own item's outcome, so "stored" still means committed
(the 201 of a join, the 202 of an answer). ``process`` reports per-item failures
(a taken nickname, a late answer) as exception instances in its result list; if it
raises, its transaction rolled back, nothing of the batch was stored, and every
submitter of the batch gets that exception.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from asgiref.sync import sync_to_async
from django.db import DatabaseError, connections

from realtime.ops.logs import background_context

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


def _run(fn: Callable[..., R], *args: object) -> R:
    try:
        return fn(*args)
    except DatabaseError:
        # A connection that stopped working (the server restarted) is not reused.
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None and not connection.is_usable():
                connection.close()
        raise


async def db_call(fn: Callable[..., R], *args: object) -> R:
    """Run ``fn(*args)`` in Django's thread-sensitive thread, keeping its connection open.

    Called from a task outside any request (the batches, the scoring worker),
    this is the process's one shared thread: the quiz's writes queue there and
    SQLite never sees two of them at once (a writer that finds the lock taken
    sleeps in steps of up to 100 ms). ``database_sync_to_async`` would close the
    connection around every call (``CONN_MAX_AGE`` 0); a new SQLite connection
    costs ~4 ms, plus a WAL checkpoint when it closes.
    """
    return await sync_to_async(_run, thread_sensitive=True)(fn, *args)


def _caller_context() -> contextvars.Context:
    """The current context, for a database call made on the caller's behalf.

    Without the request's ``ThreadSensitiveContext`` (the request's own thread,
    leased for the request alone: the batch goes to the one shared thread instead) and
    without the request id on log lines. A caller that is sync code waiting in
    ``async_to_sync`` keeps its thread: the batch runs there, where the caller's
    thread-sensitive work runs, instead of waiting for a thread the caller holds.
    """
    return background_context()


class GroupCommit(Generic[T, R]):
    """Writes items in batches through ``process(items) -> [result or exception per item]``.

    ``process`` runs through :func:`db_call` and must be all-or-nothing: one
    transaction per call. Sync code that holds the thread-sensitive thread must
    not wait for a batch (it would wait for itself).
    """

    def __init__(
        self, process: Callable[[list[T]], Sequence[R | Exception]], *, max_batch: int = 500
    ) -> None:
        self._process = process
        self.max_batch = max_batch
        self._queue: list[tuple[T, asyncio.Future[R], contextvars.Context]] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches = 0

    async def submit(self, item: T) -> R:
        """Queue ``item``; returns its result once its batch committed.

        Raises:
            Exception: the item's own failure, or the failure of its whole batch.
        """
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            # A new event loop (tests run one per test): nothing of the old one survives.
            self._loop, self._queue, self._task = loop, [], None
        future: asyncio.Future[R] = loop.create_future()
        self._queue.append((item, future, _caller_context()))
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._drain(), context=contextvars.Context())
        # A cancelled submitter (a client that went away) leaves its item in the
        # batch: it is stored all the same, like a request the server finished.
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        # Let requests already read in this pass of the loop join the first batch.
        await asyncio.sleep(0)
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            items = [item for item, _, _ in batch]
            try:
                # In the first submitter's context: it waits for this batch, so
                # a sync thread it waits from is there to run it (see _caller_context).
                call = db_call(self._process, items)
                results = await asyncio.get_running_loop().create_task(call, context=batch[0][2])
                if len(results) != len(batch):
                    raise RuntimeError(f"process returned {len(results)} results for {len(batch)} items")
            except Exception as error:
                logger.warning("batch of %d failed: %r", len(batch), error)
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self.batches += 1
            for (_, future, _), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, Exception):
                    future.set_exception(result)
                else:
                    future.set_result(result)
