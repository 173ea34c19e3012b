"""``RequestIdMiddleware``: one id per HTTP request, on its log lines and its response.

A well-formed ``X-Request-ID`` from the client or the proxy in front (nginx's
``$request_id``) is kept, so one id follows a request through every tier;
otherwise a new one is made. It is bound for :mod:`realtime.logs`, set as
``request.request_id``, and sent back as ``X-Request-ID``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from .logs import request_id_var

HEADER = "X-Request-ID"
# Ids are echoed into logs and headers: short, and nothing that could forge a line.
VALID_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")


def request_id_for(request: Any) -> str:
    supplied = request.headers.get(HEADER, "")
    return supplied if VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex


class RequestIdMiddleware:
    """Sync and async capable: it adds no thread hop to async views."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        if self.is_async:
            return self.__acall__(request)
        request_id = request.request_id = request_id_for(request)
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[HEADER] = request_id
        return response

    async def __acall__(self, request: Any) -> Any:
        request_id = request.request_id = request_id_for(request)
        token = request_id_var.set(request_id)
        try:
            response = await self.get_response(request)  # type: ignore[misc]
        finally:
            request_id_var.reset(token)
        response[HEADER] = request_id
        return response


__all__ = ["HEADER", "RequestIdMiddleware", "request_id_for"]
