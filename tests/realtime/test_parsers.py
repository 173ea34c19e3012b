"""``realtime.transport.parsers.read_json``: a request's JSON body, or a neutral refusal."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import RequestFactory, override_settings

from realtime.transport.parsers import (
    ParseError,
    PayloadTooLarge,
    RequestError,
    UnsupportedMediaType,
    read_json,
)

DEEP = "[" * 100_000 + "]" * 100_000


def request(body: bytes | str, content_type: str = "application/json") -> Any:
    return RequestFactory().post("/event", body, content_type=content_type)


@pytest.mark.parametrize(
    ("body", "content_type", "value"),
    [
        ('{"a": [1, "é"]}', "application/json", {"a": [1, "é"]}),
        ('{"a": 1}', "application/json; charset=UTF-8", {"a": 1}),
        ('"text"', "application/json", "text"),
        ("", "application/json", {}),
        # An empty body is no body, whatever it claims to be (DRF's reading too).
        ("", "text/plain", {}),
        # The test client encodes the text in the charset it is given.
        ('{"a": "é"}', "application/json; charset=utf-16", {"a": "é"}),
    ],
    ids=["object", "charset", "string", "empty", "empty of another type", "utf-16"],
)
def test_a_json_body_is_read_in_its_charset(body, content_type, value) -> None:
    assert read_json(request(body, content_type)) == value


@pytest.mark.parametrize(
    ("body", "content_type", "refusal", "status", "code", "message"),
    [
        ("{nope", "application/json", ParseError, 400, "parse_error", None),
        (
            "[NaN]",
            "application/json",
            ParseError,
            400,
            "parse_error",
            "JSON parse error - NaN is not valid JSON",
        ),
        ("[Infinity]", "application/json", ParseError, 400, "parse_error", None),
        (b"\xff\xfe{", "application/json", ParseError, 400, "parse_error", None),
        (DEEP, "application/json", ParseError, 400, "parse_error", "JSON parse error - nested too deeply"),
        (
            "{}",
            "text/plain",
            UnsupportedMediaType,
            415,
            "unsupported_media_type",
            'Unsupported media type "text/plain" in request.',
        ),
        (
            "{}",
            "application/json-patch+json",
            UnsupportedMediaType,
            415,
            "unsupported_media_type",
            'Unsupported media type "application/json-patch+json" in request.',
        ),
    ],
    ids=["not json", "NaN", "Infinity", "not utf-8", "nested too deeply", "text", "another json type"],
)
def test_what_is_not_a_json_body_is_refused_with_a_status_and_a_code(
    body, content_type, refusal, status, code, message
) -> None:
    with pytest.raises(RequestError) as caught:
        read_json(request(body, content_type))

    assert type(caught.value) is refusal
    assert (caught.value.status, caught.value.code, caught.value.headers) == (status, code, {})
    assert caught.value.message.startswith("JSON parse error - " if message is None else message)


@override_settings(DATA_UPLOAD_MAX_MEMORY_SIZE=10)
def test_a_body_larger_than_django_reads_is_413() -> None:
    with pytest.raises(PayloadTooLarge) as caught:
        read_json(request('{"a": "0123456789"}'))

    assert (caught.value.status, caught.value.code, caught.value.message) == (
        413,
        "payload_too_large",
        "Request body is too large.",
    )
