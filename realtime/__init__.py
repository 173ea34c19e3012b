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

Who is subscribed, across every server process (PROTOCOL §12)::

    realtime.occupancy("/quiz/AB12/game")   # Occupancy(channel, subscriptions, connections)

and closes or unsubscribes open connections in every process::

    realtime.disconnect(user=user, mode="USER", reason="Signed out everywhere")
    realtime.unsubscribe(channel="/quiz/AB12/game", connection=connection_id)

In a namespace that keeps history (PROTOCOL §12), ``realtime.history(channel, since=..., limit=...)``
(``ahistory`` in async code) reads what was published to a channel after an offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from realtime.operations.history_reading import HistoryPage
    from realtime.operations.publishing import PublishResult
    from realtime.presence.occupancy import Occupancy

__all__ = [
    "adisconnect",
    "ahistory",
    "aoccupancy",
    "apublish",
    "aunsubscribe",
    "disconnect",
    "history",
    "HistoryPage",
    "occupancy",
    "publish",
    "publish_many_on_commit",
    "publish_on_commit",
    "PublishResult",
    "unsubscribe",
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

    See :func:`realtime.operations.on_commit.publish_on_commit` for the contract.
    """
    from realtime.operations.on_commit import publish_on_commit as write

    write(channel, events, key=key)


def publish_many_on_commit(publications: Iterable[tuple[str, Sequence[Mapping[str, Any]], str]]) -> None:
    """:func:`publish_on_commit` for many ``(channel, events, key)`` at once, in one statement."""
    from realtime.operations.on_commit import publish_many_on_commit as write

    write(publications)


def occupancy(channel: str) -> Occupancy:
    """Subscriptions to ``channel`` (a channel or a wildcard, literally) and their connections."""
    from asgiref.sync import async_to_sync

    return async_to_sync(aoccupancy)(channel)


async def aoccupancy(channel: str) -> Occupancy:
    """:func:`occupancy` from async code."""
    from realtime.presence.service import occupancy_get

    return await occupancy_get(channel)


def disconnect(
    *,
    connection: str | None = None,
    user: Any = None,
    api_key: Any = None,
    identity: Mapping[str, Any] | None = None,
    session: str | None = None,
    mode: str | None = None,
    reason: str = "",
) -> int:
    """Close every open connection matching all criteria given, in every process.

    ``user`` and ``api_key`` take an instance or its primary key; ``session`` a Django
    session key (the USER-mode sockets opened with it); ``mode`` an auth mode. Returns how
    many connections of this process closed. See :mod:`realtime.presence.control`.
    """
    from asgiref.sync import async_to_sync

    return async_to_sync(adisconnect)(
        connection=connection,
        user=user,
        api_key=api_key,
        identity=identity,
        session=session,
        mode=mode,
        reason=reason,
    )


async def adisconnect(
    *,
    connection: str | None = None,
    user: Any = None,
    api_key: Any = None,
    identity: Mapping[str, Any] | None = None,
    session: str | None = None,
    mode: str | None = None,
    reason: str = "",
) -> int:
    """:func:`disconnect` from async code."""
    from realtime.presence import control

    return await control.adisconnect(
        connection=connection,
        user=user,
        api_key=api_key,
        identity=identity,
        session=session,
        mode=mode,
        reason=reason,
    )


def unsubscribe(*, channel: str, connection: str | None = None, user: Any = None, reason: str = "") -> int:
    """End the matching connections' subscriptions to ``channel``, in every process."""
    from asgiref.sync import async_to_sync

    return async_to_sync(aunsubscribe)(channel=channel, connection=connection, user=user, reason=reason)


async def aunsubscribe(
    *, channel: str, connection: str | None = None, user: Any = None, reason: str = ""
) -> int:
    """:func:`unsubscribe` from async code."""
    from realtime.presence import control

    return await control.aunsubscribe(channel=channel, connection=connection, user=user, reason=reason)


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
