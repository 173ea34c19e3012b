"""A request's JSON body, read the same way by every plain view of the site.

What this refuses is a :class:`RequestError` (neutral: a status, a short code in
DRF's vocabulary, a message and headers), which each app's one error renderer
turns into its own wire shape: ``realtime.transport.http.error_response`` for
``POST /event``, ``quiz.api.views.error_response`` for the quiz API.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

JSON_MEDIA_TYPE = "application/json"


class RequestError(Exception):
    """The request itself is refused, before any app looks at what it asks for."""

    status: ClassVar[int] = 400
    code: ClassVar[str] = "bad_request"

    def __init__(self, message: str, headers: dict[str, str] | None = None) -> None:
        self.message = message
        self.headers = headers or {}
        super().__init__(message)


class ParseError(RequestError):
    """The body is not JSON (or nests deeper than Python's recursion limit)."""

    code = "parse_error"


class UnsupportedMediaType(RequestError):
    status = 415
    code = "unsupported_media_type"

    def __init__(self, content_type: str) -> None:
        super().__init__(f'Unsupported media type "{content_type}" in request.')


class PayloadTooLarge(RequestError):
    """Over ``DATA_UPLOAD_MAX_MEMORY_SIZE``: Django refuses to read it."""

    status = 413
    code = "payload_too_large"

    def __init__(self) -> None:
        super().__init__("Request body is too large.")


def _strict_constant(name: str) -> Any:
    # JSON has no NaN or Infinity; Python's json module accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


def read_json(request: HttpRequest) -> Any:
    """The body as a JSON value; an empty body is ``{}``.

    ``application/json`` with any parameters (Kotlin sends ``; charset=UTF-8``,
    PROTOCOL §2.1) is the one media type accepted; the charset, if given, decodes
    the body.

    Raises:
        UnsupportedMediaType: a body of another media type.
        ParseError: not JSON, not in its charset, or nested too deeply.
        PayloadTooLarge: longer than ``DATA_UPLOAD_MAX_MEMORY_SIZE``.
    """
    try:
        body = request.body
    except RequestDataTooBig:
        raise PayloadTooLarge() from None
    if not body:
        return {}
    if request.content_type != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(request.content_type or "")
    try:
        text = body.decode(request.encoding or settings.DEFAULT_CHARSET)
        return json.loads(text, parse_constant=_strict_constant)
    except ValueError as error:
        raise ParseError(f"JSON parse error - {error}") from None
    except RecursionError:
        # "[[[[...]]]]" a hundred thousand deep is bad input, not a server fault.
        raise ParseError("JSON parse error - nested too deeply") from None
