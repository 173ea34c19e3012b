"""The live operations dashboard: a staff page fed over the realtime protocol itself.

Every server process runs one sampler (a background service, :mod:`realtime.lifecycle`): each
``REALTIME["DASHBOARD_INTERVAL"]`` seconds it publishes a snapshot of its own
counters (:attr:`realtime.ops.metrics.RealtimeMetrics.totals`) and connection count
to :data:`DASHBOARD_CHANNEL`. The page (``/realtime/dashboard/``) subscribes
with the shipped JS client and the staff member's session cookie, keeps the
latest snapshot of each process, and derives rates from successive ones, so it
shows the sum over every process without any shared store.

The ``realtime-ops`` namespace (data migration ``0006``) admits only the
``USER`` auth mode; its ``on_subscribe`` handler below admits only active staff
users, and its ``on_publish`` handler refuses every client: only the samplers
publish there, straight through the layer bridge.

Snapshot (one event), counters since the process started::

    {"v": 1, "process": "host:pid", "t": 1700000000.0, "interval": 1.0,
     "connections": 12,
     "totals": {"connects": 40, "connect_errors": 1, "disconnects": 28, "slow_consumers": 0,
                "http_requests": 7, "http_errors": 0},
     "namespaces": {"default": {"subscriptions": 3, "publishes": 9, "events": 9, "deliveries": 27,
                                "publish_errors": 0, "subscribe_errors": 0, "dropped": 0,
                                "failed": 0, "handler_errors": 0}},
     "refusals": {"quiz.join": {"overload": 120, "rate": 4}, "publish": {"rate": 2}},
     "occupancy": {"channels": [{"channel": "/default/room", "subscriptions": 5, "connections": 4}],
                   "watchers": {"default": 1}}}

``refusals`` is ``realtime_limit_refused_total`` by operation and reason (``rate``: a
configured rate was spent; ``overload``: the front door shed the request), so the page
shows which limit fires, and how often, while it fires.

Parts other layers add to each snapshot (``occupancy``, from :mod:`realtime.presence.service`)
register with :func:`add_snapshot_part`, so this module imports nothing above it; a part that
fails (its store away) is left out of that snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.contrib.admin.views.decorators import staff_member_required
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from realtime import handlers
from realtime.conf import realtime_settings
from realtime.core import protocol
from realtime.core.paths import parse_channel
from realtime.delivery.bridge import bridge
from realtime.delivery.hub import hub
from realtime.ops.metrics import metrics

logger = logging.getLogger(__name__)

OPS_NAMESPACE = "realtime-ops"
DASHBOARD_CHANNEL = f"/{OPS_NAMESPACE}/dashboard"
HOST = socket.gethostname()
# Longest pause between snapshots while the channel layer refuses them.
MAX_BACKOFF = 30.0


# -- the page ----------------------------------------------------------------------


@staff_member_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Connections, rates, errors and a per-namespace table, live."""
    return render(
        request,
        "realtime/dashboard.html",
        {
            "http_endpoint": request.build_absolute_uri(reverse("realtime:event")),
            "channel": DASHBOARD_CHANNEL,
        },
    )


# -- the channel's rules -----------------------------------------------------------


def _is_staff(identity: Mapping[str, Any] | None) -> bool:
    """A USER identity (``sub`` and ``username`` of a Django user) of an active staff member."""
    if not isinstance(identity, Mapping) or "handlerContext" in identity:
        return False
    sub, username = identity.get("sub"), identity.get("username")
    if sub is None or username is None:
        return False
    try:
        users = get_user_model().objects.filter(pk=sub, is_staff=True, is_active=True)
        return bool(users.filter(**{get_user_model().USERNAME_FIELD: username}).exists())
    except (ValueError, TypeError, ValidationError):
        return False


@handlers.on_subscribe(OPS_NAMESPACE)
def ops_subscribe(ctx: handlers.HandlerContext) -> None:
    """Only staff users watch the dashboard's channel."""
    if not _is_staff(ctx.identity):
        raise handlers.Unauthorized()


@handlers.on_publish(OPS_NAMESPACE)
def ops_publish(ctx: handlers.HandlerContext) -> None:
    """Nobody publishes here but the samplers (which go straight through the bridge)."""
    if not ctx.server:
        raise handlers.Unauthorized()


# -- the sampler -------------------------------------------------------------------


def process_id() -> str:
    """``host:pid``: read at each snapshot, so a server that forks after import stays distinct."""
    return f"{HOST}:{os.getpid()}"


SnapshotPart = Callable[[], Awaitable[dict[str, Any]]]
# name -> what adds it to each snapshot
_parts: dict[str, SnapshotPart] = {}


def add_snapshot_part(name: str, part: SnapshotPart) -> None:
    """Add ``await part()`` to every snapshot, under ``name``."""
    _parts[name] = part


async def snapshot_parts() -> dict[str, Any]:
    parts: dict[str, Any] = {}
    for name, part in _parts.items():
        try:
            parts[name] = await part()
        except Exception as exc:
            logger.debug("dashboard snapshot without %s: %s", name, exc)
    return parts


def snapshot() -> dict[str, Any]:
    """This process's counters, as the page expects them (module docstring)."""
    overall: dict[str, int] = {}
    namespaces: dict[str, dict[str, int]] = {}
    refusals: dict[str, dict[str, int]] = {}
    for (stat, label), value in list(metrics.totals.items()):
        if stat == "refused":  # labelled "operation:reason", not by namespace
            operation, _, reason = label.rpartition(":")
            refusals.setdefault(operation, {})[reason] = value
        elif label:
            namespaces.setdefault(label, {})[stat] = value
        elif stat != "connections":
            overall[stat] = value
    return {
        "v": 1,
        "process": process_id(),
        "t": time.time(),
        "interval": realtime_settings.dashboard_interval,
        "connections": hub.connection_count,
        "totals": overall,
        "namespaces": namespaces,
        "refusals": refusals,
    }


async def sample_once() -> None:
    """Publish one snapshot to :data:`DASHBOARD_CHANNEL` (to this and every other process)."""
    text = json.dumps({**snapshot(), **await snapshot_parts()}, separators=(",", ":"))
    sent = await bridge.fan_out(
        parse_channel(DASHBOARD_CHANNEL, allow_wildcard=False), [protocol.encode_event(text)]
    )
    if sent is not None:
        await sent


async def sampler_run() -> None:
    """Sample forever, one snapshot per interval: the process's background service."""
    interval = realtime_settings.dashboard_interval
    if interval <= 0:
        return
    delay = interval
    while True:
        await asyncio.sleep(delay)
        try:
            await sample_once()
        except Exception as exc:
            # The channel layer is down (the bridge logs each failed publish): back off
            # instead of adding a line per second to the outage.
            logger.debug("dashboard snapshot not published: %s", exc)
            delay = min(delay * 2, MAX_BACKOFF)
        else:
            delay = interval
