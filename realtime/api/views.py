"""``POST /event``: HTTP publish (PROTOCOL §2), the same path as WebSocket publish.

Thin: read the body, call :func:`realtime.publishing.publish`, shape the answer.
Every error leaves through :func:`event_exception_handler` as
``{"errors":[{"errorType","message"}]}`` with an ``x-amzn-ErrorType`` header,
which Amplify needs to tell an ``UnauthorizedException`` apart (PROTOCOL §10).
"""

from __future__ import annotations

import logging
from typing import Any

from adrf.views import APIView
from django.db import DatabaseError
from django.http import HttpRequest
from rest_framework import exceptions as drf_exceptions
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from ..auth import RequestInfo
from ..exceptions import (
    BadRequest,
    LimitExceeded,
    MalformedMessage,
    RealtimeError,
    ServiceUnavailable,
    Transport,
)
from ..handshake import HIDDEN_HEADERS
from ..protocol import parse_authorization
from ..publishing import publish
from .parsers import SafeJSONParser

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


def _drf_to_realtime(exc: drf_exceptions.APIException) -> RealtimeError:
    if isinstance(exc, drf_exceptions.ParseError):
        return MalformedMessage("Request body is not valid JSON")
    if isinstance(exc, drf_exceptions.Throttled):
        return LimitExceeded()
    error = BadRequest(str(exc.detail))
    error.http_status = exc.status_code  # type: ignore[misc]
    return error


def error_response(error: RealtimeError) -> Response:
    """The one place an HTTP publish error becomes a response."""
    body = {"errors": [error.to_error(Transport.HTTP)]}
    headers = {"x-amzn-ErrorType": error.error_type}
    if error.http_status in (429, 503):
        headers["Retry-After"] = "1"
    return Response(body, status=error.http_status, headers=headers)


def event_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, RealtimeError):
        return error_response(exc)
    if isinstance(exc, DatabaseError):
        # Namespaces and keys could not be read: a passing outage, not a bug.
        logger.warning("POST /event: database unavailable: %s", exc)
        return error_response(ServiceUnavailable())
    if isinstance(exc, drf_exceptions.APIException):
        return error_response(_drf_to_realtime(exc))
    logger.exception("unexpected error in POST /event")
    return error_response(RealtimeError())


class EventView(APIView):
    """Publish 1-5 events to one channel."""

    authentication_classes: list[Any] = []
    permission_classes: list[Any] = []
    throttle_classes: list[Any] = []
    parser_classes = [SafeJSONParser]
    renderer_classes = [JSONRenderer]

    def get_exception_handler(self) -> Any:
        return event_exception_handler

    async def post(self, request: Request) -> Response:
        # Read the raw body before DRF parses it: SigV4 verifies these bytes.
        raw_body = request.body
        body = request.data
        if not isinstance(body, dict):
            raise MalformedMessage("Request body must be a JSON object")
        channel = body.get("channel")
        events = body.get("events")
        if not isinstance(channel, str):
            raise MalformedMessage("channel must be a string")
        if not isinstance(events, list):
            raise MalformedMessage("events must be an array")
        headers = {
            name.lower(): value
            for name, value in request.headers.items()
            if name.lower() not in HIDDEN_HEADERS
        }
        publication = await publish(
            channel=channel,
            events=events,
            credentials=parse_authorization(headers),
            http_body=raw_body,
            request=RequestInfo(
                transport=Transport.HTTP,
                headers=headers,
                source_ip=_client_ip(request),
                cookies=request.COOKIES,
                http_request=request._request,
            ),
        )
        result = await publication.completed()
        return Response(result.as_dict())

    async def options(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return Response(status=204)

    def finalize_response(self, request: HttpRequest, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        for name, value in CORS_HEADERS.items():
            response[name] = value
        return response


def _client_ip(request: Request) -> str | None:
    return request.META.get("REMOTE_ADDR")
