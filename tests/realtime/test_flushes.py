"""realtime.delivery.flushes: the flushes of one loop pass run from one callback."""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest

from realtime.delivery.flushes import flush_queue

WHO: contextvars.ContextVar[str] = contextvars.ContextVar("who", default="nobody")


def _context(name: str) -> contextvars.Context:
    context = contextvars.copy_context()
    context.run(WHO.set, name)
    return context


async def test_one_callback_runs_every_flush_of_a_pass_in_order_each_in_its_own_context(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loop = asyncio.get_running_loop()
    scheduled: list[Any] = []
    call_soon = loop.call_soon

    def counting_call_soon(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        if getattr(callback, "__self__", None) is queue:
            scheduled.append(callback)
        return call_soon(callback, *args, **kwargs)

    ran: list[str] = []
    queue = flush_queue(loop)
    monkeypatch.setattr(loop, "call_soon", counting_call_soon)
    assert flush_queue(loop) is queue
    for name in ("a", "b", "c"):
        queue.add(lambda: ran.append(WHO.get()), _context(name))
    assert ran == [] and len(scheduled) == 1
    await asyncio.sleep(0)
    assert ran == ["a", "b", "c"]
    assert WHO.get() == "nobody"

    # A flush asked for while the others run goes to the next pass.
    queue.add(lambda: queue.add(lambda: ran.append("again"), _context("d")), _context("c"))
    await asyncio.sleep(0)
    assert ran == ["a", "b", "c"]
    await asyncio.sleep(0)
    assert ran == ["a", "b", "c", "again"]
    assert len(scheduled) == 3


async def test_a_failing_flush_is_reported_and_the_others_still_run() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    ran: list[str] = []

    def failing() -> None:
        raise RuntimeError("boom")

    queue = flush_queue(loop)
    queue.add(failing, _context("a"))
    queue.add(lambda: ran.append(WHO.get()), _context("b"))
    await asyncio.sleep(0)
    assert ran == ["b"]
    assert [str(context["exception"]) for context in reported] == ["boom"]
