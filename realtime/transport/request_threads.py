"""Each HTTP request's thread for its sync work, leased from idle threads instead of started for it.

Django's ASGI handler runs every request inside ``ThreadSensitiveContext()``: the
request's thread-sensitive ``sync_to_async`` calls (its sync ``request_started``
and ``request_finished`` receivers, ``response.close()``, a sync view, the ORM
calls of an async one) all run in one thread of the request's own, shared with no
other request while it runs. asgiref starts that thread with the request's first
such call (the event loop waits until it has started) and, once the request is
over, starts a second thread to join it: two thread starts per request, a fifth of
the event loop's time under a storm of joins (docs/DESIGN.md, "`transport/`").

:class:`RequestThreads` keeps the guarantee and starts no thread per request. It
wraps Django's ASGI application and enters the request's ``ThreadSensitiveContext()``
itself, as the outermost one (Django's own inside it then changes nothing), with a
single-thread executor leased to that request alone already in place as the
context's executor. When the request is over the executor is taken back before the
context exits (which would shut it down) and goes back to the idle ones, at most
``REALTIME["IDLE_REQUEST_THREADS"]`` of them; one more is shut down without waiting
for its thread, which then ends by itself.

Not ``ThreadSensitiveContext(executor=...)``, which asgiref offers for an executor
the caller owns: a task the request started that outlives it (a shared cache load,
say) would then fail its next thread-sensitive call ("ThreadSensitiveContext has
exited"). Here such a task finds no executor for the request's context and asgiref
starts one for it, exactly as under Django alone. (Long-lived services a request
starts run in :func:`realtime.ops.logs.background_context`, without the request's
context: on the process's shared sync thread.)

An executor that still has work when its request is over is never leased again:
the request was cancelled from outside while a sync call ran (asgiref lets the
awaiting coroutine go, but no one can stop the thread). It is shut down instead,
and its thread ends once that call returns. (A client that disconnects does not
get here: Django cancels the view, then sends ``request_finished``, whose sync
receivers queue behind the call still running, so the request ends only when its
thread is free.)

A leased thread keeps what is thread-local from one request to the next, as a WSGI
server's threads do, its database connections among them: ``request_finished``
still closes each one that is obsolete (``close_old_connections``; with
``CONN_MAX_AGE`` 0, at the end of every request), in the request's own thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import SyncToAsync, ThreadSensitiveContext

from realtime.conf import realtime_settings

P = ParamSpec("P")
T = TypeVar("T")

Scope = Mapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


class RequestExecutor(ThreadPoolExecutor):
    """One worker thread that knows whether it still has work: a call running or queued."""

    def __init__(self) -> None:
        # The name is what a profile of the process shows for the thread.
        super().__init__(max_workers=1, thread_name_prefix="http-request")
        # Futures submitted and not done. A set, not a counter: adding and
        # discarding are atomic between the loop's thread and the worker's.
        self._unfinished: set[Future[Any]] = set()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        future = super().submit(fn, *args, **kwargs)
        self._unfinished.add(future)
        # Runs at once if the call is already over: discarded all the same.
        future.add_done_callback(self._unfinished.discard)
        return future

    @property
    def busy(self) -> bool:
        """Whether a call is running or waiting in this executor."""
        return bool(self._unfinished)


class IdleThreads:
    """The executors no request holds, most recently used first out."""

    def __init__(self) -> None:
        self._idle: list[RequestExecutor] = []

    def __len__(self) -> int:
        return len(self._idle)

    def lease(self) -> RequestExecutor:
        """An idle executor, or a new one (its thread starts with its first call)."""
        try:
            return self._idle.pop()
        except IndexError:
            return RequestExecutor()

    def give_back(self, executor: RequestExecutor) -> None:
        """Keep ``executor`` for the next request, unless it has work left or enough are idle."""
        if executor.busy or len(self._idle) >= realtime_settings.idle_request_threads:
            # Without waiting: the thread ends once what it runs returns.
            executor.shutdown(wait=False)
        else:
            self._idle.append(executor)

    def idle(self) -> tuple[RequestExecutor, ...]:
        """The idle executors, the next one to be leased last."""
        return tuple(self._idle)


class RequestThreads:
    """ASGI middleware: each HTTP request of ``app`` (Django's) gets an idle thread for its sync work."""

    def __init__(self, app: Callable[..., Any]) -> None:
        self.app = app
        self.threads = IdleThreads()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        executor = self.threads.lease()
        executors = SyncToAsync.context_to_thread_executor
        try:
            async with ThreadSensitiveContext() as context:
                executors[context] = executor
                try:
                    await self.app(scope, receive, send)
                finally:
                    # Taken back before the context exits, which would shut it down.
                    if executors.get(context) is executor:
                        del executors[context]
        finally:
            self.threads.give_back(executor)
