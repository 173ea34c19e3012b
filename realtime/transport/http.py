"""``POST /event``: HTTP publish (PROTOCOL §2), the same path as WebSocket publish.

Thin: read the body, call :func:`realtime.operations.publishing.publish`, shape the answer.
Every error leaves through :func:`error_response` as
``{"errors":[{"errorType","message"}]}`` with an ``x-amzn-ErrorType`` header,
which Amplify needs to tell an ``UnauthorizedException`` apart (PROTOCOL §10);
429 and 503 carry ``Retry-After``. Every answer, errors and preflights
included, carries the CORS headers browsers need (PROTOCOL §2.3).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from realtime.auth import RequestInfo
from realtime.core.headers import HIDDEN_HEADERS
from realtime.core.protocol import parse_authorization
from realtime.exceptions import (
    BadRequest,
    MalformedMessage,
    RealtimeError,
    ServiceUnavailable,
    Transport,
)
from realtime.operations.publishing import publish
from realtime.transport.clients import client_ip
from realtime.transport.endpoints import View, endpoint
from realtime.transport.openapi import PUBLISH
from realtime.transport.parsers import ParseError, RequestError, read_json

logger = logging.getLogger(__name__)

# Browser clients (Amplify events.post) publish from any origin (PROTOCOL §2.3).
CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": (
        "content-type, x-api-key, authorization, x-amz-date, x-amz-security-token, "
        "x-amz-user-agent, x-amz-content-sha256"
    ),
    "Access-Control-Expose-Headers": "x-amzn-ErrorType, x-amzn-RequestId",
    "Access-Control-Max-Age": "86400",
}
RETRYABLE = (429, 503)


def error_response(exc: Exception) -> JsonResponse:
    """The one place an error of ``POST /event`` becomes a response; it answers every exception."""
    error, status, headers = _as_realtime_error(exc)
    response = JsonResponse({"errors": [error.to_error(Transport.HTTP)]}, status=status, headers=headers)
    response["x-amzn-ErrorType"] = error.error_type
    if status in RETRYABLE:
        response["Retry-After"] = str(getattr(error, "retry_after", 1))
    return response


def _as_realtime_error(exc: Exception) -> tuple[RealtimeError, int, dict[str, str]]:
    """The error to report for ``exc``, its HTTP status and any headers of its own."""
    if isinstance(exc, RealtimeError):
        return exc, exc.http_status, {}
    if isinstance(exc, ParseError):
        return MalformedMessage("Request body is not valid JSON"), exc.status, exc.headers
    if isinstance(exc, RequestError):
        # The request itself (method, media type, size): AppSync calls every such refusal a bad request.
        return BadRequest(exc.message), exc.status, exc.headers
    if isinstance(exc, DatabaseError):
        # Namespaces and keys could not be read: a passing outage, not a bug.
        logger.warning("POST /event: database unavailable: %s", exc)
        error: RealtimeError = ServiceUnavailable()
    else:
        logger.exception("unexpected error in POST /event")
        error = RealtimeError()
    return error, error.http_status, {}


def cors(methods: str) -> Callable[[View], View]:
    """Give every answer of a view the CORS headers, allowing ``methods`` (PROTOCOL §2.3)."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def respond(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            response = await view(request, *args, **kwargs)
            for name, value in CORS_HEADERS.items():
                response[name] = value
            response["Access-Control-Allow-Methods"] = methods
            return response

        return respond

    return decorate


def _source_ip(request: HttpRequest) -> str | None:
    # Under ASGI the scope names the peer; behind a trusted proxy, the client it forwarded.
    scope = getattr(request, "scope", None)
    if scope is None:
        return request.META.get("REMOTE_ADDR")
    return client_ip(scope) or None


def request_info(request: HttpRequest) -> RequestInfo:
    """What authorizers and handlers may know of an HTTP request (headers lowercased, secrets hidden)."""
    headers = {
        name.lower(): value for name, value in request.headers.items() if name.lower() not in HIDDEN_HEADERS
    }
    return RequestInfo(
        transport=Transport.HTTP,
        headers=headers,
        source_ip=_source_ip(request),
        cookies=request.COOKIES,
        http_request=request,
    )


@cors("POST, OPTIONS")
@endpoint(on_error=error_response, post=PUBLISH, options=None)
async def event(request: HttpRequest) -> HttpResponse:
    """Publish 1-5 events to one channel; an ``OPTIONS`` preflight gets 204 and the CORS headers."""
    if request.method == "OPTIONS":
        return HttpResponse(status=204)
    body = read_json(request)
    if not isinstance(body, dict):
        raise MalformedMessage("Request body must be a JSON object")
    channel = body.get("channel")
    events = body.get("events")
    if not isinstance(channel, str):
        raise MalformedMessage("channel must be a string")
    if not isinstance(events, list):
        raise MalformedMessage("events must be an array")
    info = request_info(request)
    publication = await publish(
        channel=channel,
        events=events,
        credentials=parse_authorization(info.headers),
        # The raw bytes, as read: SigV4 verifies exactly these.
        http_body=request.body,
        request=info,
    )
    result = await publication.completed()
    return JsonResponse(result.as_dict())
