"""``/healthz`` (the process answers) and ``/readyz`` (database and channel layer reachable)."""

from __future__ import annotations

import asyncio
import logging

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer, get_channel_layer
from django.db import connection
from django.http import HttpRequest, JsonResponse

from realtime.delivery.bridge import CHANNEL_PREFIX, leaves_process

logger = logging.getLogger(__name__)

READY_TIMEOUT = 2.0


async def healthz(request: HttpRequest) -> JsonResponse:
    """Alive: answers without touching anything else (load balancers' liveness probe)."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _layer_ok() -> None:
    layer = get_channel_layer()
    if not leaves_process(layer):
        return  # nothing to reach: the in-memory layer (or none)
    await _round_trip(layer)


async def _round_trip(layer: BaseChannelLayer) -> None:
    # A round trip through the layer proves it can carry fan-out. The channel shares the bridge's
    # prefix (realtime.delivery.hub.): channels_redis reads all process-local channels of one prefix from
    # one Redis key, but every prefix through one receive lock, which the bridge's receive loop
    # holds while it waits. Under any other prefix the check waited for the next fan-out
    # message, so a process with connections and no traffic was never ready.
    channel = await layer.new_channel(CHANNEL_PREFIX)  # type: ignore[call-arg]  # real layers take a prefix
    await layer.send(channel, {"type": "realtime.ping"})
    await layer.receive(channel)


async def readyz(request: HttpRequest) -> JsonResponse:
    """Ready: the database and the channel layer answer within two seconds each (503 if not)."""
    checks: dict[str, str] = {}
    for name, check in (("database", database_sync_to_async(_database_ok)), ("channel_layer", _layer_ok)):
        try:
            await asyncio.wait_for(check(), READY_TIMEOUT)
            checks[name] = "ok"
        except Exception as exc:
            # repr: a timeout's text is empty, and "failed: " alone did not say it was one.
            logger.warning("readiness check %s failed: %r", name, exc)
            checks[name] = "unavailable"
    ready = all(value == "ok" for value in checks.values())
    return JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
