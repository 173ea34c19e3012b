"""AppSync Events for Django: namespaces, channels, publish and subscribe.

Server code publishes through the same path as HTTP and WebSocket clients::

    import realtime

    realtime.publish("/default/chat", [{"text": "hello"}])         # sync code
    await realtime.apublish("/default/chat", [{"text": "hello"}])  # async code
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .publishing import PublishResult

__all__ = ["PublishResult", "apublish", "publish"]


def publish(channel: str, events: list[Any]) -> PublishResult:
    """Publish JSON-serialisable ``events`` to ``channel`` from synchronous code."""
    from asgiref.sync import async_to_sync

    from .publishing import publish_from_server

    return async_to_sync(publish_from_server)(channel, events)


async def apublish(channel: str, events: list[Any]) -> PublishResult:
    """Publish JSON-serialisable ``events`` to ``channel`` from async code."""
    from .publishing import publish_from_server

    return await publish_from_server(channel, events)


def __getattr__(name: str) -> Any:
    if name == "PublishResult":
        from .publishing import PublishResult

        return PublishResult
    raise AttributeError(name)
