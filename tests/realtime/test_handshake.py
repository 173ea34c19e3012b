"""Connect-time credentials off the WebSocket upgrade (realtime/transport/handshake.py, PROTOCOL §3.1)."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from realtime.transport.handshake import (
    RequestCookies,
    RequestHeaders,
    connect_credentials,
    decode_authorization,
    request_cookies,
    request_headers,
)

API_KEY = {"host": "example.com", "x-api-key": "da2-key"}
# Values whose base64 needs the characters the two alphabets spell differently.
WITH_PLUS = {"x-api-key": "da2-??>>"}  # standard "+", url-safe "-"
WITH_SLASH = {"x-api-key": "da2-ab?>"}  # standard "/", url-safe "_"
WITH_PADDING = {"x-api-key": "da2-~~~"}  # one "=" of padding, and "+"
WITH_TWO_PADDING = {"x-api-key": "da2-abc>?"}  # "==" of padding


def raw(value) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def standard(value) -> str:
    return base64.b64encode(raw(value)).decode()


def url_safe(value) -> str:
    return base64.urlsafe_b64encode(raw(value)).decode()


def unpadded(value) -> str:
    """What the docs' ``base64 | tr '+/' '-_' | tr -d '\\n='`` produces (Amplify)."""
    return url_safe(value).rstrip("=")


def test_the_sample_values_exercise_both_alphabets_and_padding():
    assert "+" in standard(WITH_PLUS) and "-" in url_safe(WITH_PLUS)
    assert "/" in standard(WITH_SLASH) and "_" in url_safe(WITH_SLASH)
    assert standard(WITH_PADDING).endswith("=") and not standard(WITH_PADDING).endswith("==")
    assert standard(WITH_TWO_PADDING).endswith("==")


@pytest.mark.parametrize(
    "value",
    [API_KEY, WITH_PLUS, WITH_SLASH, WITH_PADDING, WITH_TWO_PADDING],
    ids=["api-key", "plus", "slash", "padding", "two-padding"],
)
@pytest.mark.parametrize(
    "encode",
    [standard, url_safe, unpadded, lambda v: standard(v).rstrip("=")],
    ids=["standard", "url-safe", "url-safe-unpadded", "standard-unpadded"],
)
def test_decode_authorization_accepts_either_alphabet_with_or_without_padding(value, encode):
    assert decode_authorization(encode(value)) == value


@pytest.mark.parametrize(
    ("encoded", "expected"),
    [
        pytest.param(f"  {unpadded(API_KEY)}\n", API_KEY, id="surrounding-whitespace"),
        pytest.param(
            unpadded({"Authorization": "token", "X-Amz-Date": "20250101T000000Z", "n": 1}),
            {"authorization": "token", "x-amz-date": "20250101T000000Z"},
            id="keys-lowercased-non-strings-dropped",
        ),
        pytest.param(unpadded({}), {}, id="empty-object"),
        pytest.param(
            base64.urlsafe_b64encode('{"x-api-key":"caf\u00e9"}'.encode()).decode().rstrip("="),
            {"x-api-key": "caf\u00e9"},
            id="utf8-json",
        ),
    ],
)
def test_decode_authorization_returns_the_normalised_object(encoded, expected):
    assert decode_authorization(encoded) == expected


@pytest.mark.parametrize(
    "encoded",
    [
        pytest.param("", id="empty"),
        pytest.param("!!!!", id="not-base64"),
        pytest.param("a", id="one-char"),
        pytest.param("abcde", id="impossible-length"),
        pytest.param(unpadded(API_KEY)[:-1], id="truncated"),
        pytest.param(unpadded(API_KEY)[:10] + " " + unpadded(API_KEY)[10:], id="space-inside"),
        pytest.param(unpadded(API_KEY) + "\u00e9", id="non-ascii"),
        pytest.param(base64.b64encode(b"not json").decode(), id="not-json"),
        pytest.param(base64.b64encode(b"\xff\xfe\xfd").decode(), id="not-utf8"),
        pytest.param(base64.b64encode(b"[" * 100_000).decode(), id="deeply-nested"),
        pytest.param(unpadded(["x-api-key", "k"]), id="array"),
        pytest.param(unpadded("da2-key"), id="string"),
        pytest.param(unpadded(42), id="number"),
        pytest.param(unpadded(True), id="boolean"),
        pytest.param(unpadded(None), id="null"),
    ],
)
def test_decode_authorization_returns_none_for_anything_but_an_encoded_object(encoded):
    assert decode_authorization(encoded) is None


# ---------------------------------------------------------------------------
# connect_credentials


SUBPROTOCOL_KEY = {"host": "example.com", "x-api-key": "from-subprotocol"}
HEADER_KEY = {"host": "example.com", "x-api-key": "from-headers"}
QUERY_KEY = {"host": "example.com", "x-api-key": "from-query"}


def header_subprotocol(value) -> str:
    return "header-" + unpadded(value)


def query(value, *, quoted: bool = True) -> bytes:
    encoded = standard(value)
    return f"header={quote(encoded, safe='') if quoted else encoded}&payload=e30=".encode()


UPGRADE_HEADERS = {
    "host": "realtime.example.com",
    "x-api-key": "from-headers",
    "x-amz-date": "20250101T000000Z",
    "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
    "sec-websocket-protocol": "aws-appsync-event-ws",
    "user-agent": "swift",
    "x-amz-user-agent": "aws-sdk-swift",
}


@pytest.mark.parametrize(
    ("subprotocols", "headers", "query_string", "expected"),
    [
        pytest.param(
            ["aws-appsync-event-ws", header_subprotocol(SUBPROTOCOL_KEY)],
            UPGRADE_HEADERS,
            query(QUERY_KEY),
            SUBPROTOCOL_KEY,
            id="subprotocol-wins-over-headers-and-query",
        ),
        pytest.param(
            [header_subprotocol(SUBPROTOCOL_KEY), "aws-appsync-event-ws"],
            {},
            b"",
            SUBPROTOCOL_KEY,
            id="subprotocol-in-either-order",
        ),
        pytest.param(
            ["aws-appsync-event-ws", "header-" + standard(SUBPROTOCOL_KEY)],
            {},
            b"",
            SUBPROTOCOL_KEY,
            id="subprotocol-standard-alphabet-padded",
        ),
        pytest.param(
            ["aws-appsync-event-ws", "header-!!!", header_subprotocol(SUBPROTOCOL_KEY)],
            {},
            b"",
            SUBPROTOCOL_KEY,
            id="first-decodable-subprotocol",
        ),
        pytest.param(
            ["aws-appsync-event-ws", "header-!!!"],
            UPGRADE_HEADERS,
            b"",
            {"host": "realtime.example.com", "x-api-key": "from-headers", "x-amz-date": "20250101T000000Z"},
            id="undecodable-subprotocol-falls-back-to-headers",
        ),
        pytest.param(
            ["aws-appsync-event-ws", header_subprotocol(["not", "an", "object"])],
            UPGRADE_HEADERS,
            b"",
            {"host": "realtime.example.com", "x-api-key": "from-headers", "x-amz-date": "20250101T000000Z"},
            id="non-object-subprotocol-falls-back-to-headers",
        ),
        pytest.param(
            ["aws-appsync-event-ws"],
            UPGRADE_HEADERS,
            query(QUERY_KEY),
            {"host": "realtime.example.com", "x-api-key": "from-headers", "x-amz-date": "20250101T000000Z"},
            id="headers-win-over-query-and-keep-only-credential-headers",
        ),
        pytest.param(
            ["aws-appsync-event-ws"],
            {
                "host": "h",
                "authorization": "AWS4-HMAC-SHA256 Credential=x",
                "x-amz-date": "d",
                "x-amz-security-token": "t",
                "x-amz-content-sha256": "s",
                "accept": "application/json, text/javascript",
                "content-encoding": "amz-1.0",
                "content-type": "application/json; charset=UTF-8",
                "origin": "https://app.example.com",
            },
            b"",
            {
                "host": "h",
                "authorization": "AWS4-HMAC-SHA256 Credential=x",
                "x-amz-date": "d",
                "x-amz-security-token": "t",
                "x-amz-content-sha256": "s",
                "accept": "application/json, text/javascript",
                "content-encoding": "amz-1.0",
                "content-type": "application/json; charset=UTF-8",
            },
            id="iam-header-set",
        ),
        pytest.param(
            [],
            {"host": "h", "authorization": "Bearer jwt"},
            b"",
            {"host": "h", "authorization": "Bearer jwt"},
            id="authorization-header-alone",
        ),
        pytest.param(
            ["aws-appsync-event-ws"],
            {"host": "realtime.example.com", "user-agent": "x"},
            query(QUERY_KEY),
            QUERY_KEY,
            id="query-when-headers-carry-no-credential",
        ),
        pytest.param(
            [],
            {},
            f"header={url_safe(QUERY_KEY)}".encode(),
            QUERY_KEY,
            id="query-url-safe",
        ),
        pytest.param([], {}, query(WITH_PLUS), WITH_PLUS, id="query-percent-encoded-plus"),
        pytest.param([], {}, query(WITH_PLUS, quoted=False), WITH_PLUS, id="query-raw-plus"),
        pytest.param([], {}, query(WITH_SLASH, quoted=False), WITH_SLASH, id="query-raw-slash"),
        pytest.param([], {}, query(WITH_PADDING, quoted=False), WITH_PADDING, id="query-raw-padding"),
        pytest.param(
            [], {}, query(WITH_TWO_PADDING, quoted=False), WITH_TWO_PADDING, id="query-raw-double-padding"
        ),
        pytest.param(
            [], {}, f"header={unpadded(WITH_PLUS)}".encode(), WITH_PLUS, id="query-url-safe-unpadded"
        ),
        pytest.param(
            [],
            {},
            b"x-custom=1&header=!!!&header=" + standard(QUERY_KEY).encode(),
            QUERY_KEY,
            id="first-decodable-query-header-and-unknown-params-ignored",
        ),
        pytest.param(
            ["aws-appsync-event-ws"],
            {"host": "realtime.example.com", "user-agent": "x"},
            b"header=!!!",
            {"host": "realtime.example.com"},
            id="nothing-decodable-returns-credential-headers",
        ),
        pytest.param([], {}, b"", {}, id="nothing-at-all"),
        pytest.param(["graphql-ws", "aws-appsync-event-ws"], {}, b"", {}, id="unrelated-subprotocols"),
    ],
)
def test_connect_credentials_come_from_the_first_carrier_that_has_them(
    subprotocols, headers, query_string, expected
):
    assert connect_credentials(subprotocols, headers, query_string) == expected


# ---------------------------------------------------------------------------
# request_headers


@pytest.mark.parametrize(
    ("raw_headers", "expected"),
    [
        pytest.param([], {}, id="none"),
        pytest.param(
            [(b"Host", b"example.com"), (b"X-Api-Key", b"da2-key")],
            {"host": "example.com", "x-api-key": "da2-key"},
            id="names-lowercased",
        ),
        pytest.param(
            [(b"host", b"example.com"), (b"cookie", b"session=secret"), (b"Cookie", b"csrftoken=x")],
            {"host": "example.com"},
            id="cookies-dropped",
        ),
        pytest.param(
            [(b"accept", b"a"), (b"Accept", b"b"), (b"accept", b"c")],
            {"accept": "a,b,c"},
            id="repeats-joined",
        ),
        pytest.param(
            [(b"x-name", b"Caf\xe9 Value")],
            {"x-name": "Caf\u00e9 Value"},
            id="latin-1-values",
        ),
        pytest.param(
            [(b"Sec-WebSocket-Protocol", b"aws-appsync-event-ws, header-abc")],
            {"sec-websocket-protocol": "aws-appsync-event-ws, header-abc"},
            id="values-kept-verbatim",
        ),
    ],
)
def test_request_headers_are_a_lowercased_dict_without_cookies(raw_headers, expected):
    assert request_headers(raw_headers) == expected


def test_subprotocols_passed_as_one_comma_separated_entry_are_split() -> None:
    from realtime.transport.handshake import connect_credentials, offered_subprotocols

    raw = "aws-appsync-event-ws, header-eyJ4LWFwaS1rZXkiOiJrIn0"
    assert offered_subprotocols([raw]) == ["aws-appsync-event-ws", "header-eyJ4LWFwaS1rZXkiOiJrIn0"]
    assert connect_credentials([raw], {}, b"") == {"x-api-key": "k"}


def test_request_headers_and_cookies_read_the_scope_s_list_as_the_copies_did():
    raw = [
        (b"host", b"example.com"),
        (b"cookie", b"sessionid=abc; csrftoken=x"),
        (b"x-custom", b"1"),
        (b"x-custom", b"2"),
    ]
    headers, cookies = RequestHeaders(raw), RequestCookies(raw)
    assert (
        dict(headers)
        == dict(headers.items())
        == request_headers(raw)
        == {"host": "example.com", "x-custom": "1,2"}
    )
    assert (headers["host"], headers.get("cookie"), "x-custom" in headers, len(headers)) == (
        "example.com",
        None,
        True,
        2,
    )
    assert dict(cookies) == request_cookies(raw) == {"sessionid": "abc", "csrftoken": "x"}
    assert (cookies.get("sessionid"), cookies.get("missing")) == ("abc", None)


def test_each_decoding_of_the_same_header_is_the_caller_s_own_dict():
    # Decodings are cached per distinct header (a storm presents one API key thousands of times).
    first = decode_authorization(unpadded(API_KEY))
    assert first == API_KEY
    first["x-api-key"] = "changed"
    second = decode_authorization(unpadded(API_KEY))
    assert second == API_KEY
    assert second is not first


class UnreadHeaders(RequestHeaders):
    """Headers that fail the test if they are decoded."""

    def items(self):
        raise AssertionError("headers read although a subprotocol carried the credentials")


def test_headers_are_not_read_when_a_subprotocol_carries_the_credentials():
    headers = UnreadHeaders([(b"x-api-key", b"from-headers")])
    assert (
        connect_credentials(["aws-appsync-event-ws", "header-" + unpadded(API_KEY)], headers, b"") == API_KEY
    )
    # Without one, the same headers are the carrier.
    assert connect_credentials(["aws-appsync-event-ws"], RequestHeaders([(b"x-api-key", b"k")]), b"") == {
        "x-api-key": "k"
    }
