"""Reading a channel's history: ``GET /event/history`` and ``realtime.history()`` (PROTOCOL §12).

Authorized like a subscribe (:func:`~realtime.operations.subscribing.subscribe_authorize`:
namespace, the namespace's subscribe modes, ``on_subscribe``), so a reader sees exactly
the publications a subscriber of the same channel (or wildcard) would have received.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from realtime.auth import RequestInfo
from realtime.conf import realtime_settings
from realtime.core.paths import parse_channel
from realtime.delivery.history import history
from realtime.exceptions import BadRequest, NamespaceNotFound, ServiceUnavailable, Transport
from realtime.operations.subscribing import subscribe_authorize
from realtime.store.selectors import namespace_get


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """Publications of one stream after a position, oldest first.

    ``events`` are (offset, event text) pairs; ``offset`` and ``epoch`` name the
    stream's last publication. ``complete`` says the page holds every
    publication after ``since`` in this epoch: nothing was trimmed or expired
    and ``limit`` did not cut it short (read on from the last offset if so).
    Without ``since`` the page is the latest ``limit`` publications, complete
    when none of them is missing.
    """

    channel: str
    epoch: str
    offset: int
    complete: bool
    events: list[tuple[int, str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "epoch": self.epoch,
            "offset": self.offset,
            "complete": self.complete,
            "events": [{"offset": offset, "event": event} for offset, event in self.events],
        }

    def payloads(self) -> list[tuple[int, Any]]:
        """The events as JSON values, for server code."""
        return [(offset, json.loads(event)) for offset, event in self.events]


async def history_read(
    *,
    channel: str,
    since: int | None,
    epoch: str | None,
    limit: int | None,
    credentials: Mapping[str, str] | None,
    request: RequestInfo,
    trusted: bool = False,
) -> HistoryPage:
    """Up to ``limit`` publications of ``channel`` after offset ``since`` (the latest ones without).

    An ``epoch`` other than the stream's means the reader's offsets belong to a lost
    history: the page then holds the latest publications and is not complete.

    Raises:
        InvalidChannel, NamespaceNotFound, Unauthorized, HandlerRejected, BadRequest
        (no history in the namespace, a bad limit), ServiceUnavailable.
    """
    path = parse_channel(channel, allow_wildcard=True)
    bound = realtime_settings.history_recover_limit
    if limit is None:
        limit = bound
    if not 1 <= limit <= bound:
        raise BadRequest(f"limit must be between 1 and {bound}")
    if since is not None and since < 0:
        raise BadRequest("since must be a non-negative integer")
    if not trusted:
        await subscribe_authorize(channel=path, raw_channel=channel, credentials=credentials, request=request)
    namespace = await namespace_get(name=path.namespace)
    if namespace is None:
        raise NamespaceNotFound()
    if not namespace.history_size:
        raise BadRequest("This namespace keeps no history")
    store = history()
    try:
        stream = await store.read(path.key, since, limit)
        # Offsets of a lost history, or beyond this one's end: the reader starts again.
        lost = (epoch is not None and epoch != stream.epoch) or (since is not None and since > stream.top)
        if since is None or lost:
            since = max(stream.top - limit, 0)
            stream = await store.read(path.key, since, limit)
            complete = not lost and (stream.first is None or stream.first <= since + 1)
        else:
            complete = stream.first is not None and stream.first <= since + 1 and stream.top - since <= limit
            complete = complete or stream.top == since
    except Exception as exc:
        raise ServiceUnavailable() from exc
    events = [(offset, json.loads(encoded)) for offset, encoded in stream.entries if offset > since]
    return HistoryPage(path.path, stream.epoch, stream.top, complete, events)


async def history_from_server(
    channel: str, *, since: int | None = None, limit: int | None = None
) -> HistoryPage:
    """What :func:`realtime.history` and :func:`realtime.ahistory` call: no authorization."""
    return await history_read(
        channel=channel,
        since=since,
        epoch=None,
        limit=limit,
        credentials=None,
        request=RequestInfo(transport=Transport.SERVER),
        trusted=True,
    )
