"""Reading connect-time credentials off a WebSocket upgrade (PROTOCOL §3.1). Pure.

Credentials arrive in one of two carriers, looked for in this order:

1. the ``header-<base64url>`` subprotocol (Amplify JS, browsers), whose payload is
   the JSON authorization object, base64url without padding;
2. the upgrade request's own headers (the Swift and Kotlin clients).

A ``?header=<base64>`` query parameter (the AppSync GraphQL convention some
third-party clients send) is accepted as a last fallback. Unknown query
parameters are ignored: Amplify appends custom headers there.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import ItemsView, Iterable, Iterator, Mapping, Sequence
from urllib.parse import parse_qs

from realtime.core.headers import HIDDEN_HEADERS
from realtime.core.protocol import parse_authorization
from realtime.exceptions import MalformedMessage

SUBPROTOCOL = "aws-appsync-event-ws"
HEADER_SUBPROTOCOL_PREFIX = "header-"

# Headers that carry credentials; the rest of the upgrade request is context.
CREDENTIAL_HEADERS = frozenset(
    {
        "x-api-key",
        "authorization",
        "host",
        "x-amz-date",
        "x-amz-security-token",
        "x-amz-content-sha256",
        "accept",
        "content-encoding",
        "content-type",
    }
)


def decode_authorization(encoded: str) -> dict[str, str] | None:
    """Decode a base64(url) JSON authorization object; ``None`` if it is not one."""
    decoded = _decoded_authorization(encoded)
    # A copy: the caller owns its dict, the cache keeps its own.
    return dict(decoded) if decoded is not None else None


# A connect storm is thousands of clients of one app presenting the same API-key
# header: each distinct one is decoded once. Bounded, and the values are already
# in the memory of every connection that presented them.
@functools.lru_cache(maxsize=256)
def _decoded_authorization(encoded: str) -> dict[str, str] | None:
    text = encoded.strip()
    text += "=" * (-len(text) % 4)
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
        value = json.loads(raw)
        return parse_authorization(value)
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError, MalformedMessage):
        return None


def request_cookies(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Cookies of an upgrade request (for the USER auth mode only), parsed as Django does."""
    from django.http.cookie import parse_cookie

    cookies: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        if raw_name.lower() == b"cookie":
            cookies.update(parse_cookie(raw_value.decode("latin-1")))
    return cookies


def request_headers(raw_headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI headers as a lowercased dict, cookies removed; repeats joined by ``,``."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in raw_headers:
        name = raw_name.decode("latin-1").lower()
        if name in HIDDEN_HEADERS:
            continue
        value = raw_value.decode("latin-1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


class RequestHeaders(Mapping[str, str]):
    """:func:`request_headers` of an upgrade request, read from the ASGI scope's own list on
    every access instead of kept as a copy: a connection lives for hours and mostly idles,
    and its headers are read once per authorized operation at most."""

    __slots__ = ("_raw",)

    def __init__(self, raw_headers: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw_headers

    def __getitem__(self, name: str) -> str:
        return request_headers(self._raw)[name]

    def __iter__(self) -> Iterator[str]:
        return iter(request_headers(self._raw))

    def __len__(self) -> int:
        return len(request_headers(self._raw))

    def items(self) -> ItemsView[str, str]:
        # One decoding for the whole view, not one per key.
        return request_headers(self._raw).items()

    def __repr__(self) -> str:
        return f"RequestHeaders({request_headers(self._raw)!r})"


class RequestCookies(Mapping[str, str]):
    """:func:`request_cookies` of an upgrade request, parsed on every access (only the USER
    mode reads them)."""

    __slots__ = ("_raw",)

    def __init__(self, raw_headers: Sequence[tuple[bytes, bytes]]) -> None:
        self._raw = raw_headers

    def __getitem__(self, name: str) -> str:
        return request_cookies(self._raw)[name]

    def __iter__(self) -> Iterator[str]:
        return iter(request_cookies(self._raw))

    def __len__(self) -> int:
        return len(request_cookies(self._raw))


def offered_subprotocols(subprotocols: Iterable[str]) -> list[str]:
    """The offered subprotocols, one per entry: some servers (uvicorn's websockets-sansio)
    pass the raw comma-separated header as a single entry."""
    return [part.strip() for entry in subprotocols for part in entry.split(",") if part.strip()]


def connect_credentials(
    subprotocols: Iterable[str], headers: Mapping[str, str], query_string: bytes
) -> dict[str, str]:
    """The authorization object a connection presents, from whichever carrier has one.

    ``headers`` is read only when no subprotocol carries credentials (a lazy
    :class:`RequestHeaders` then decodes the request's headers only in that case).
    """
    for subprotocol in offered_subprotocols(subprotocols):
        if subprotocol.startswith(HEADER_SUBPROTOCOL_PREFIX):
            decoded = decode_authorization(subprotocol[len(HEADER_SUBPROTOCOL_PREFIX) :])
            if decoded is not None:
                return decoded
    from_headers = {name: value for name, value in headers.items() if name in CREDENTIAL_HEADERS}
    if "x-api-key" in from_headers or "authorization" in from_headers:
        return from_headers
    query = parse_qs(query_string.decode("latin-1"))
    for encoded in query.get("header", []):
        # Form decoding reads a raw "+" (standard base64, sent unescaped by
        # GraphQL-style clients) as a space; base64 never contains spaces.
        decoded = decode_authorization(encoded.replace(" ", "+"))
        if decoded is not None:
            return decoded
    return from_headers
