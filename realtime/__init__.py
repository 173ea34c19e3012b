"""AppSync Events for Django: namespaces, channels, publish and subscribe.

Server code publishes through the same path as HTTP and WebSocket clients::

    import realtime

    realtime.publish("/default/chat", [{"text": "hello"}])         # sync code
    await realtime.apublish("/default/chat", [{"text": "hello"}])  # async code

Code that announces a change it makes in a transaction publishes on commit
instead: the events are written with the change and published by the relay
once it commits, at least once, each with its identifier (realtime.operations.relay)::

    with transaction.atomic():
        order.save()
        realtime.publish_on_commit("/default/orders", [{"id": order.pk}], key=f"order-{order.pk}-saved")

In a namespace that keeps history (PROTOCOL §12), ``realtime.history(channel, since=..., limit=...)``
(``ahistory`` in async code) reads what was published to a channel after an offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.operations.history_reading import HistoryPage
    from realtime.operations.publishing import PublishResult

__all__ = [
    "HistoryPage",
    "PublishResult",
    "ahistory",
    "apublish",
    "history",
    "publish",
    "publish_many_on_commit",
    "publish_on_commit",
]


def publish(channel: str, events: list[Any]) -> PublishResult:
    """Publish JSON-serialisable ``events`` to ``channel`` from synchronous code."""
    from asgiref.sync import async_to_sync

    from realtime.operations.publishing import publish_from_server

    return async_to_sync(publish_from_server)(channel, events)


async def apublish(channel: str, events: list[Any]) -> PublishResult:
    """Publish JSON-serialisable ``events`` to ``channel`` from async code."""
    from realtime.operations.publishing import publish_from_server

    return await publish_from_server(channel, events)


def publish_on_commit(channel: str, events: Sequence[Mapping[str, Any]], *, key: str) -> None:
    """Publish ``events`` (JSON objects) to ``channel`` once the current transaction commits.

    See :func:`realtime.operations.relay.publish_on_commit` for the contract.
    """
    from realtime.operations.relay import publish_on_commit as write

    write(channel, events, key=key)


def publish_many_on_commit(publications: Iterable[tuple[str, Sequence[Mapping[str, Any]], str]]) -> None:
    """:func:`publish_on_commit` for many ``(channel, events, key)`` at once, in one statement."""
    from realtime.operations.relay import publish_many_on_commit as write

    write(publications)


def __getattr__(name: str) -> Any:
    if name == "PublishResult":
        from realtime.operations.publishing import PublishResult

        return PublishResult
    raise AttributeError(name)


def history(channel: str, *, since: int | None = None, limit: int | None = None) -> HistoryPage:
    """Publications of ``channel`` after offset ``since`` (the latest without), from sync code.

    The channel's namespace must keep history (PROTOCOL §12); ``channel`` may be a wildcard.
    """
    from asgiref.sync import async_to_sync

    from realtime.operations.history_reading import history_from_server

    return async_to_sync(history_from_server)(channel, since=since, limit=limit)


async def ahistory(channel: str, *, since: int | None = None, limit: int | None = None) -> HistoryPage:
    """:func:`history` from async code."""
    from realtime.operations.history_reading import history_from_server

    return await history_from_server(channel, since=since, limit=limit)
