"""The reference: the same protocol subset, written the way the Channels tutorial writes chat.

``daphne bench.fanout.reference_app:application``

Every subscription ``group_add``s the connection's own layer channel, every
published event is one ``group_send``, and the layer calls the consumer's
``chat_message`` handler, which sends the ``data`` frame. This is the pattern
most Channels apps use and the one DESIGN §2 measured; the benchmark reports
our server as a multiple of it.

Standalone: it configures its own minimal Django settings (no database, no
auth). The layer is the tutorial's ``InMemoryChannelLayer`` with its defaults,
or ``channels_redis``' ``RedisChannelLayer`` when ``BENCH_REFERENCE_REDIS_URL``
is set (the multi-process scenario). Frames are built with ``json.dumps`` as a
tutorial consumer would.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from typing import Any

import django
from django.conf import settings

SUBPROTOCOL = "aws-appsync-event-ws"


def _layers() -> dict[str, Any]:
    redis_url = os.environ.get("BENCH_REFERENCE_REDIS_URL", "")
    if redis_url:
        return {
            "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url]}}
        }
    return {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="realtime-bench-reference",
        ALLOWED_HOSTS=["*"],
        INSTALLED_APPS=["channels"],
        CHANNEL_LAYERS=_layers(),
        USE_TZ=True,
    )
    django.setup()

from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402


def group_for(channel: str) -> str:
    # Group names allow only [A-Za-z0-9._-]; derive one from the channel path.
    return "bench." + hashlib.sha1(channel.encode(), usedforsecurity=False).hexdigest()[:24]


class TutorialConsumer(AsyncWebsocketConsumer):
    """One connection: ``group_add`` per subscription, ``group_send`` per event."""

    async def connect(self) -> None:
        self.subscriptions: dict[str, list[str]] = {}  # group -> subscription ids
        offered = self.scope.get("subprotocols", [])
        await self.accept(SUBPROTOCOL if SUBPROTOCOL in offered else None)

    async def disconnect(self, code: int) -> None:
        for group in self.subscriptions:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = json.loads(text_data or "{}")
        kind = message.get("type")
        if kind == "connection_init":
            await self.send(text_data=json.dumps({"type": "connection_ack", "connectionTimeoutMs": 300000}))
        elif kind == "subscribe":
            group = group_for(message["channel"])
            await self.channel_layer.group_add(group, self.channel_name)
            self.subscriptions.setdefault(group, []).append(message["id"])
            await self.send(text_data=json.dumps({"type": "subscribe_success", "id": message["id"]}))
        elif kind == "unsubscribe":
            for ids in self.subscriptions.values():
                if message["id"] in ids:
                    ids.remove(message["id"])
            await self.send(text_data=json.dumps({"type": "unsubscribe_success", "id": message["id"]}))
        elif kind == "publish":
            group = group_for(message["channel"])
            successful = []
            for index, event in enumerate(message["events"]):
                await self.channel_layer.group_send(
                    group, {"type": "chat.message", "group": group, "event": event}
                )
                successful.append({"identifier": str(uuid.uuid4()), "index": index})
            await self.send(
                text_data=json.dumps(
                    {"type": "publish_success", "id": message["id"], "successful": successful, "failed": []}
                )
            )

    async def chat_message(self, message: dict[str, Any]) -> None:
        for sub_id in self.subscriptions.get(message["group"], ()):
            await self.send(text_data=json.dumps({"type": "data", "id": sub_id, "event": message["event"]}))


application = ProtocolTypeRouter(
    {"websocket": URLRouter([path("event/realtime", TutorialConsumer.as_asgi())])}
)
