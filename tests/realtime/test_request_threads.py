"""Each HTTP request's sync work runs in a thread leased to it alone (``realtime.transport.request_threads``).

Requests are driven through the real ``ASGIHandler.__call__`` with hand-made
scope, ``receive`` and ``send``, as a server drives it; the views of this
module's URLconf record the thread they run in.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIHandler
from django.core.signals import request_finished, request_started
from django.db import connection, connections
from django.http import HttpRequest, HttpResponse
from django.test import override_settings
from django.urls import path

from config.asgi import application
from realtime.transport.request_threads import RequestThreads

WAIT = 5.0


class Seen:
    """What the views and the request signals' sync receivers saw, and the gates the views wait at."""

    def __init__(self) -> None:
        self.views: dict[str, threading.Thread] = {}
        self.started: dict[str, threading.Thread] = {}
        self.finished: list[threading.Thread] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.barrier = threading.Barrier(1)
        self.database: list[tuple[str, threading.Thread, Any]] = []

    def view(self, request: HttpRequest) -> None:
        self.views[request.GET["id"]] = threading.current_thread()

    def on_started(self, sender: Any, scope: dict[str, Any], **kwargs: Any) -> None:
        self.started[scope["query_string"].decode().removeprefix("id=")] = threading.current_thread()

    def on_finished(self, sender: Any, **kwargs: Any) -> None:
        self.finished.append(threading.current_thread())


seen = Seen()


def plain(request: HttpRequest) -> HttpResponse:
    seen.view(request)
    return HttpResponse("done")


def blocking(request: HttpRequest) -> HttpResponse:
    seen.view(request)
    seen.entered.set()
    assert seen.release.wait(WAIT)
    return HttpResponse("released")


def together(request: HttpRequest) -> HttpResponse:
    seen.view(request)
    # Breaks (and the request answers 500) unless every party runs at once, each in its own thread.
    seen.barrier.wait(WAIT)
    return HttpResponse("together")


def database(request: HttpRequest) -> HttpResponse:
    seen.view(request)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    seen.database.append(("query", threading.current_thread(), connections["default"]))
    return HttpResponse("queried")


# Tasks a request started that outlive it (asyncio keeps only weak references to tasks).
outliving: list[asyncio.Task[threading.Thread]] = []


async def starts_a_task(request: HttpRequest) -> HttpResponse:
    """Starts a task that makes a thread-sensitive call once the request is over."""
    await sync_to_async(seen.view)(request)

    async def later() -> threading.Thread:
        await asyncio.to_thread(seen.release.wait, WAIT)
        return await sync_to_async(threading.current_thread)()

    outliving.append(asyncio.get_running_loop().create_task(later()))
    return HttpResponse("started")


urlpatterns = [
    path("plain", plain),
    path("starts-a-task", starts_a_task),
    path("blocking", blocking),
    path("together", together),
    path("database", database),
]

pytestmark = pytest.mark.urls(__name__)


@pytest.fixture(autouse=True)
def recorded() -> Iterator[Seen]:
    global seen
    seen = Seen()
    request_started.connect(seen.on_started)
    request_finished.connect(seen.on_finished)
    yield seen
    request_started.disconnect(seen.on_started)
    request_finished.disconnect(seen.on_finished)
    seen.release.set()


@pytest.fixture
def app() -> Iterator[RequestThreads]:
    app = RequestThreads(ASGIHandler())
    yield app
    for executor in app.threads.idle():
        executor.submit(connections.close_all).result()
        executor.shutdown()


class Exchange:
    """One request in flight: its ``receive`` fed by the test, what the application sent."""

    def __init__(self, app: Any, path: str, request_id: str) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        self.sent: list[dict[str, Any]] = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": f"id={request_id}".encode(),
            "root_path": "",
            "headers": [(b"host", b"testserver")],
            "client": ("10.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self.task = asyncio.create_task(app(scope, self.inbox.get, self.send))

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def disconnect(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})

    async def answer(self) -> tuple[int, bytes]:
        await asyncio.wait_for(self.task, WAIT)
        return self.sent[0]["status"], b"".join(message.get("body", b"") for message in self.sent[1:])


async def nothing_sent(message: dict[str, Any]) -> None:
    raise AssertionError(f"sent {message}")


async def get(app: Any, path: str, request_id: str) -> tuple[int, bytes]:
    return await Exchange(app, path, request_id).answer()


async def until(condition: threading.Event) -> None:
    await asyncio.wait_for(asyncio.to_thread(condition.wait), WAIT)


def eventually(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def ended(thread: threading.Thread) -> bool:
    thread.join(WAIT)
    return not thread.is_alive()


async def together(app: Any, recorded: Seen, label: str, count: int) -> set[threading.Thread]:
    """Runs ``count`` requests that can only all answer at once; the threads their views ran in."""
    recorded.views.clear()
    recorded.barrier = threading.Barrier(count)
    answers = await asyncio.gather(*(get(app, "/together", f"{label}-{number}") for number in range(count)))
    assert answers == [(200, b"together")] * count
    return set(recorded.views.values())


# -- one thread, leased again ------------------------------------------------------------


async def test_sequential_requests_run_on_one_leased_thread(app, recorded):
    for number in range(20):
        assert await get(app, "/plain", str(number)) == (200, b"done")

    threads = {*recorded.views.values(), *recorded.started.values(), *recorded.finished}
    [thread] = threads
    assert thread is not threading.current_thread()
    assert thread.name.startswith("http-request")
    assert len(recorded.views) == 20 and len(recorded.finished) == 20
    assert len(app.threads) == 1


async def test_concurrent_requests_each_have_a_thread_of_their_own(app, recorded):
    assert len(await together(app, recorded, "at-once", 4)) == 4
    # Each request's sync receivers ran in that request's thread, the view's.
    assert recorded.started == recorded.views
    assert sorted(map(id, recorded.finished)) == sorted(map(id, recorded.views.values()))
    assert len(app.threads) == 4


async def test_the_threads_of_concurrent_requests_are_leased_again_afterwards(app, recorded):
    first = await together(app, recorded, "first", 3)

    assert await together(app, recorded, "again", 3) == first


# -- the bound on idle threads -----------------------------------------------------------


@override_settings(REALTIME={"IDLE_REQUEST_THREADS": 2})
async def test_threads_beyond_the_idle_bound_end(app, recorded):
    threads = await together(app, recorded, "first", 4)

    assert len(app.threads) == 2
    assert len(threads) == 4
    await asyncio.to_thread(eventually, lambda: sum(thread.is_alive() for thread in threads) == 2)
    kept = {thread for thread in threads if thread.is_alive()}
    assert len(kept) == 2
    # The two kept serve the next requests.
    assert await together(app, recorded, "again", 2) == kept


@override_settings(REALTIME={"IDLE_REQUEST_THREADS": 0})
async def test_with_no_idle_threads_each_request_thread_ends_with_it(app, recorded):
    assert await get(app, "/plain", "1") == (200, b"done")

    assert len(app.threads) == 0
    assert ended(recorded.views["1"])


# -- cancelled and disconnected requests -------------------------------------------------


async def test_a_request_cancelled_during_a_sync_call_does_not_lend_its_busy_thread(app, recorded):
    stuck = Exchange(app, "/blocking", "stuck")
    await until(recorded.entered)

    stuck.task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stuck.task

    assert len(app.threads) == 0
    # Another request runs meanwhile, in another thread.
    assert await get(app, "/plain", "next") == (200, b"done")
    assert recorded.views["next"] is not recorded.views["stuck"]
    assert recorded.views["stuck"].is_alive()
    assert len(app.threads) == 1

    recorded.release.set()
    # Its thread ends once the call returns; it was never lent.
    assert ended(recorded.views["stuck"])
    assert len(app.threads) == 1
    # Django's tasks outlived the cancelled request: the view's ends with its call, the
    # disconnect's listener with a disconnect. The request body's file was left open.
    stuck.disconnect()
    await asyncio.sleep(0.05)
    del stuck
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


async def test_a_client_gone_during_a_sync_call_ends_its_request_once_its_thread_is_free(app, recorded):
    gone = Exchange(app, "/blocking", "gone")
    await until(recorded.entered)

    gone.disconnect()
    await asyncio.sleep(0.2)

    # Django cancelled the view's coroutine; request_finished waits in the busy thread.
    assert not gone.task.done()
    assert len(app.threads) == 0
    assert await get(app, "/plain", "next") == (200, b"done")
    assert recorded.views["next"] is not recorded.views["gone"]

    recorded.release.set()
    await asyncio.wait_for(gone.task, WAIT)

    assert gone.sent == []
    assert recorded.finished == [recorded.views["next"], recorded.views["gone"]]
    assert len(app.threads) == 2
    assert not any(executor.busy for executor in app.threads.idle())


async def test_a_task_that_outlives_its_request_gets_a_thread_of_its_own_not_the_leased_one(app, recorded):
    outliving.clear()
    assert await get(app, "/starts-a-task", "first") == (200, b"started")
    # The request's thread went back to the idle ones; the next request leases it.
    assert await get(app, "/plain", "next") == (200, b"done")
    assert recorded.views["next"] is recorded.views["first"]

    recorded.release.set()
    thread = await asyncio.wait_for(outliving.pop(), WAIT)

    # As under Django alone: asgiref starts a thread for the ended request's context.
    assert thread is not recorded.views["first"]
    assert thread is not threading.main_thread()
    assert len(app.threads) == 1


async def test_an_application_that_raises_gives_its_idle_thread_back(recorded):
    async def failing(scope: Any, receive: Any, send: Any) -> None:
        await sync_to_async(lambda: recorded.finished.append(threading.current_thread()))()
        raise RuntimeError("view failed")

    app = RequestThreads(failing)

    with pytest.raises(RuntimeError, match="view failed"):
        await app({"type": "http"}, asyncio.Queue().get, nothing_sent)

    [executor] = app.threads.idle()
    assert not executor.busy
    executor.shutdown()
    assert recorded.finished[0].name.startswith("http-request")


async def test_other_connections_pass_through_without_a_thread(app):
    with pytest.raises(ValueError, match="Django can only handle ASGI/HTTP connections, not lifespan."):
        await app({"type": "lifespan"}, asyncio.Queue().get, nothing_sent)

    assert len(app.threads) == 0


# -- database connections ----------------------------------------------------------------


@pytest.fixture
def closes(recorded: Seen) -> Iterator[None]:
    """Each close of a database connection, and the thread it happened in, goes to ``recorded.database``."""
    wrapper_class = type(connections["default"])
    close = wrapper_class.close

    def recorded_close(wrapper: Any) -> None:
        recorded.database.append(("close", threading.current_thread(), wrapper))
        close(wrapper)

    with mock.patch.object(wrapper_class, "close", recorded_close):
        yield


def what_happened(events: list[tuple[str, threading.Thread, Any]]) -> list[str]:
    """The queries and closes in order, closes in a row counted once.

    (SQLite's in-memory test database ignores a close, so the next request's
    start finds the connection open and closes it again; a real one is closed once.)
    """
    happened = [what for what, _, _ in events]
    previous = [None, *happened]
    return [what for before, what in zip(previous, happened, strict=False) if not what == before == "close"]


@pytest.mark.django_db(transaction=True)
async def test_with_conn_max_age_0_the_database_connection_closes_at_the_end_of_each_request(
    app, recorded, closes
):
    assert connections.settings["default"]["CONN_MAX_AGE"] == 0

    for number in range(2):
        assert await get(app, "/database", str(number)) == (200, b"queried")

    assert what_happened(recorded.database) == ["query", "close", "query", "close"]
    # All in the requests' one thread, on its one connection handler.
    [thread] = {thread for _, thread, _ in recorded.database}
    assert thread is recorded.views["0"] is recorded.views["1"]
    assert len({id(wrapper) for _, _, wrapper in recorded.database}) == 1
    wrapper = recorded.database[-1][2]
    if not (wrapper.vendor == "sqlite" and wrapper.is_in_memory_db()):  # it stays open (see above)
        assert wrapper.connection is None


@pytest.mark.django_db(transaction=True)
async def test_with_persistent_connections_the_leased_thread_keeps_its_connection(app, recorded, closes):
    with mock.patch.dict(connections.settings["default"], {"CONN_MAX_AGE": 600}):
        for number in range(2):
            assert await get(app, "/database", str(number)) == (200, b"queried")

    assert what_happened(recorded.database) == ["query", "query"]
    [(_, _, first), (_, _, second)] = recorded.database
    assert first is second and first.connection is not None


# -- the site ----------------------------------------------------------------------------


@pytest.mark.urls("config.urls")
async def test_the_site_serves_http_requests_from_leased_threads(recorded):
    for number in range(5):
        assert (await get(application, "/healthz", str(number)))[0] == 200

    [thread] = set(recorded.started.values()) | set(recorded.finished)
    assert thread.name.startswith("http-request")
