"""``RequestIdMiddleware``: one id per HTTP request, on its log lines and its response.

A well-formed ``X-Request-ID`` from the client or the proxy in front (nginx's
``$request_id``) is kept, so one id follows a request through every tier;
otherwise a new one is made. It is bound for :mod:`realtime.ops.logs`, set as
``request.request_id``, and sent back as ``X-Request-ID``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from typing import cast

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.http import HttpRequest, HttpResponseBase

from realtime.ops.logs import request_id_var

HEADER = "X-Request-ID"
# Ids are echoed into logs and headers: short, and nothing that could forge a line.
VALID_REQUEST_ID = re.compile(r"\A[A-Za-z0-9._:-]{1,128}\Z")

# What Django hands a middleware: the next layer, sync or async (never both).
GetResponse = Callable[[HttpRequest], HttpResponseBase | Awaitable[HttpResponseBase]]


def request_id_for(request: HttpRequest) -> str:
    supplied = request.headers.get(HEADER, "")
    return supplied if VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex


def _bind(request: HttpRequest) -> str:
    """Sets ``request.request_id`` and returns it."""
    request_id = request_id_for(request)
    request.request_id = request_id  # type: ignore[attr-defined]  # ours; HttpRequest lacks it
    return request_id


class RequestIdMiddleware:
    """Sync and async capable: it adds no thread hop to async views."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self.__acall__(request)
        request_id = _bind(request)
        token = request_id_var.set(request_id)
        try:
            # Sync chain (is_async is false): get_response returns the response itself.
            response = cast(HttpResponseBase, self.get_response(request))
        finally:
            request_id_var.reset(token)
        response[HEADER] = request_id
        return response

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        request_id = _bind(request)
        token = request_id_var.set(request_id)
        try:
            # Async chain (is_async is true): get_response is a coroutine function.
            response = await cast(Awaitable[HttpResponseBase], self.get_response(request))
        finally:
            request_id_var.reset(token)
        response[HEADER] = request_id
        return response


__all__ = ["HEADER", "RequestIdMiddleware", "request_id_for"]
