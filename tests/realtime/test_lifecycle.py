"""Background services: registered once, started once per event loop (realtime/lifecycle.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from django.conf import settings
from django.test import AsyncClient

from realtime import lifecycle as lifecycle_module
from realtime.lifecycle import Lifecycle, lifecycle

IN_MEMORY = "channels.layers.InMemoryChannelLayer"


def counting_service(runs: list[str], name: str):
    async def run() -> None:
        runs.append(name)
        await asyncio.Event().wait()

    return run


async def test_each_enabled_service_starts_once_per_loop_after_the_loop_hooks():
    events: list[str] = []
    services = Lifecycle()
    services.on_new_loop("index", lambda: events.append("reset"))
    services.register("a", counting_service(events, "a"))
    services.register("b", counting_service(events, "b"), enabled=lambda: False)

    services.ensure_started()
    services.ensure_started()
    await asyncio.sleep(0)

    assert events == ["reset", "a"]
    assert services.running == ("a",)
    await services.stop()
    assert services.running == ()


async def test_registering_a_name_again_replaces_the_service():
    runs: list[str] = []
    services = Lifecycle()
    services.register("a", counting_service(runs, "first"))
    services.register("a", counting_service(runs, "second"))
    services.ensure_started()
    await asyncio.sleep(0)
    assert runs == ["second"]
    await services.stop()


async def test_a_failing_service_is_logged_and_restarted(monkeypatch, caplog):
    monkeypatch.setattr(lifecycle_module, "RESTART_DELAY", 0.01)
    attempts: list[int] = []
    recovered = asyncio.Event()

    async def flaky() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise RuntimeError("boom")
        recovered.set()

    services = Lifecycle()
    services.register("flaky", flaky)
    services.ensure_started()
    await asyncio.wait_for(recovered.wait(), 1)

    assert attempts == [0, 1, 2]
    failures = [r for r in caplog.records if "background service flaky failed" in r.getMessage()]
    assert len(failures) == 2
    await services.stop()


async def test_stop_with_names_stops_only_those():
    runs: list[str] = []
    services = Lifecycle()
    services.register("a", counting_service(runs, "a"))
    services.register("b", counting_service(runs, "b"))
    services.ensure_started()
    await asyncio.sleep(0)
    await services.stop("a")
    assert services.running == ("b",)
    await services.stop()


async def test_a_private_loop_in_another_thread_leaves_the_running_owner_alone():
    runs: list[str] = []
    services = Lifecycle()
    services.register("a", counting_service(runs, "a"))
    services.ensure_started()
    owner = asyncio.get_running_loop()

    seen: list[object] = []

    def elsewhere() -> None:
        async def main() -> None:
            seen.append(services.owned_elsewhere())
            services.ensure_started()
            seen.append(services.loop)

        asyncio.run(main())

    thread = threading.Thread(target=elsewhere)
    thread.start()
    await asyncio.get_running_loop().run_in_executor(None, thread.join)

    assert seen == [True, owner]
    assert services.running == ("a",)
    assert runs == ["a"]
    await services.stop()


async def test_a_new_loop_takes_over_once_the_old_one_has_stopped():
    runs: list[str] = []
    services = Lifecycle()
    services.register("a", counting_service(runs, "a"))

    def on_a_loop_of_its_own() -> None:
        async def main() -> None:
            services.ensure_started()
            await asyncio.sleep(0)

        asyncio.run(main())

    await asyncio.get_running_loop().run_in_executor(None, on_a_loop_of_its_own)
    services.ensure_started()
    await asyncio.sleep(0)

    assert runs == ["a", "a"]
    assert services.loop is asyncio.get_running_loop()
    await services.stop()


@pytest.mark.django_db
async def test_an_http_request_starts_the_process_services_without_any_asgi_wrapper():
    response = await AsyncClient().get("/healthz")

    assert response.status_code == 200
    assert lifecycle.loop is asyncio.get_running_loop()
    # The bridge's service ends at once on the in-memory layer (it receives from
    # Redis in the suite's Redis pass); the test settings run the quiz's worker
    # and the relay outside the server; the quiz's feeds wait for changes, and
    # occupancy writes and streams counts.
    bridge = ("layer-bridge",) if settings.CHANNEL_LAYERS["default"]["BACKEND"] != IN_MEMORY else ()
    assert lifecycle.running == ("keepalive", *bridge, "dashboard-sampler", "occupancy", "quiz.feeds")


async def test_each_service_has_a_context_of_its_own():
    import contextvars

    flag: contextvars.ContextVar[str] = contextvars.ContextVar("flag", default="unset")
    seen: dict[str, str] = {}
    both_set = asyncio.Event()

    def service(name: str):
        async def run() -> None:
            flag.set(name)
            if len(seen) == 1:
                both_set.set()
            seen[name] = ""
            await both_set.wait()
            seen[name] = flag.get()

        return run

    services = Lifecycle()
    services.register("a", service("a"))
    services.register("b", service("b"))
    services.ensure_started()
    await asyncio.wait_for(both_set.wait(), 1)
    await asyncio.sleep(0)

    # Had they shared one context, the second set() would be what both read.
    assert seen == {"a": "a", "b": "b"}
    await services.stop()
