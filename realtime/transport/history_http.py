"""``GET /event/history``: read a channel's history over HTTP (PROTOCOL §12).

Thin, like ``POST /event`` (:mod:`realtime.transport.http`), whose error shape, credentials
and CORS headers it shares: query parameters in, :func:`history_read`, a JSON page out.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse

from realtime.core.protocol import parse_authorization
from realtime.exceptions import BadRequest
from realtime.operations.history_reading import history_read
from realtime.transport.endpoints import endpoint
from realtime.transport.http import cors, error_response, request_info
from realtime.transport.openapi import HISTORY


def _integer(request: HttpRequest, name: str) -> int | None:
    raw = request.GET.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 18:
        raise BadRequest(f"{name} must be a non-negative integer")
    return int(raw)


@cors("GET, OPTIONS")
@endpoint(on_error=error_response, get=HISTORY, options=None)
async def event_history(request: HttpRequest) -> HttpResponse:
    """The publications of one channel after ``since``; an ``OPTIONS`` preflight gets 204."""
    if request.method == "OPTIONS":
        return HttpResponse(status=204)
    channel = request.GET.get("channel")
    if channel is None:
        raise BadRequest("channel is required")
    info = request_info(request)
    page = await history_read(
        channel=channel,
        since=_integer(request, "since"),
        epoch=request.GET.get("epoch"),
        limit=_integer(request, "limit"),
        credentials=parse_authorization(info.headers),
        request=info,
    )
    return JsonResponse(page.as_dict())
