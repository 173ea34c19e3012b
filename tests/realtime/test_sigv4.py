"""The pure SigV4 module: AWS's published test-suite vectors and a cross-check against botocore."""

from __future__ import annotations

import datetime as dt
import hashlib
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from realtime.core import (
    sigv4,  # The credentials, date and scope of AWS's SigV4 test suite (aws-sig-v4-test-suite).
)

SUITE_KEY_ID = "AKIDEXAMPLE"
SUITE_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
SUITE_DATE = "20150830T123600Z"
SUITE_HOST = "example.amazonaws.com"
SUITE_HEADERS = {"host": SUITE_HOST, "x-amz-date": SUITE_DATE}


def suite_authorization(signature: str, signed_headers: str = "host;x-amz-date") -> sigv4.ParsedAuthorization:
    return sigv4.parse_authorization(
        f"AWS4-HMAC-SHA256 Credential={SUITE_KEY_ID}/20150830/us-east-1/service/aws4_request, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )


@pytest.mark.parametrize(
    ("name", "method", "raw_path", "query", "expected"),
    [
        ("get-vanilla", "GET", "/", "", "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        ("post-vanilla", "POST", "/", "", "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        (
            "post-vanilla-query",
            "POST",
            "/",
            "Param1=value1",
            "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        ),
        (
            "get-vanilla-query-order-key-case",
            "GET",
            "/",
            "Param2=value2&Param1=value1",
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
        ("get-utf8", "GET", "/ሴ", "", "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    ],
)
def test_aws_test_suite_vectors(name, method, raw_path, query, expected):
    request = sigv4.canonical_request(
        method=method,
        uri=sigv4.canonical_uri(raw_path),
        query=sigv4.canonical_query_string(query),
        headers=SUITE_HEADERS,
        signed_headers=["host", "x-amz-date"],
        payload_hash=sigv4.EMPTY_SHA256,
    )
    to_sign = sigv4.string_to_sign(
        amz_date=SUITE_DATE,
        credential_scope="20150830/us-east-1/service/aws4_request",
        canonical_request=request,
    )

    signature = sigv4.signature(
        secret_access_key=SUITE_SECRET,
        date="20150830",
        region="us-east-1",
        service="service",
        string_to_sign=to_sign,
    )

    assert signature == expected
    assert sigv4.verify(
        parsed=suite_authorization(expected),
        secret_access_key=SUITE_SECRET,
        amz_date=SUITE_DATE,
        method=method,
        uri=sigv4.canonical_uri(raw_path),
        query=sigv4.canonical_query_string(query),
        headers=SUITE_HEADERS,
        payload_hash=sigv4.EMPTY_SHA256,
    )


def test_post_vanilla_canonical_request_and_string_to_sign_are_the_documented_text():
    request = sigv4.canonical_request(
        method="POST",
        uri="/",
        query="",
        headers={"host": SUITE_HOST, "x-amz-date": SUITE_DATE},
        signed_headers=["host", "x-amz-date"],
        payload_hash=sigv4.EMPTY_SHA256,
    )

    assert request == (
        "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n"
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert sigv4.string_to_sign(
        amz_date=SUITE_DATE,
        credential_scope="20150830/us-east-1/service/aws4_request",
        canonical_request=request,
    ) == (
        "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
        "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87"
    )


def test_a_wrong_secret_or_a_changed_header_does_not_verify():
    good = "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
    common = {
        "parsed": suite_authorization(good),
        "amz_date": SUITE_DATE,
        "method": "POST",
        "uri": "/",
        "query": "",
        "payload_hash": sigv4.EMPTY_SHA256,
    }

    assert sigv4.verify(secret_access_key=SUITE_SECRET, headers=SUITE_HEADERS, **common)
    assert not sigv4.verify(secret_access_key=SUITE_SECRET + "x", headers=SUITE_HEADERS, **common)
    other_host = {**SUITE_HEADERS, "host": "evil.example.com"}
    assert not sigv4.verify(secret_access_key=SUITE_SECRET, headers=other_host, **common)
    with pytest.raises(sigv4.SigV4Error, match="x-amz-date"):
        sigv4.verify(secret_access_key=SUITE_SECRET, headers={"host": SUITE_HOST}, **common)


# -- parsing ----------------------------------------------------------------------------


def test_an_authorization_value_is_parsed_into_its_parts():
    parsed = sigv4.parse_authorization(
        "AWS4-HMAC-SHA256 Credential=AKIAEXAMPLE/20250101/eu-west-1/appsync/aws4_request, "
        "SignedHeaders=accept;content-encoding;content-type;host;x-amz-date, Signature=" + "a" * 64
    )

    assert parsed == sigv4.ParsedAuthorization(
        access_key_id="AKIAEXAMPLE",
        date="20250101",
        region="eu-west-1",
        service="appsync",
        signed_headers=("accept", "content-encoding", "content-type", "host", "x-amz-date"),
        signature="a" * 64,
    )
    assert parsed.credential_scope == "20250101/eu-west-1/appsync/aws4_request"


def test_components_may_be_separated_by_bare_commas_in_any_order():
    parsed = sigv4.parse_authorization(
        "AWS4-HMAC-SHA256 Signature=" + "b" * 64 + ",SignedHeaders=host;x-amz-date,"
        "Credential=AKID/20250101/us-east-1/appsync/aws4_request"
    )

    assert (parsed.access_key_id, parsed.signed_headers) == ("AKID", ("host", "x-amz-date"))


GOOD_CREDENTIAL = "Credential=AKID/20250101/us-east-1/appsync/aws4_request"
GOOD_SIGNATURE = "Signature=" + "c" * 64


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("Bearer token", "not an AWS4-HMAC-SHA256"),
        (
            f"AWS4-HMAC-SHA1 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIGNATURE}",
            "not an AWS4-HMAC-SHA256",
        ),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_SIGNATURE}", "exactly"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, {GOOD_SIGNATURE}, Extra=1", "exactly"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, {GOOD_CREDENTIAL}, SignedHeaders=host", "malformed"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders, {GOOD_SIGNATURE}", "malformed"),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/appsync, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "credential scope",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/20250101/us-east-1/appsync/aws5_request, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "credential scope",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=AKID/2025-01-01/us-east-1/appsync/aws4_request, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "scope date",
        ),
        (
            "AWS4-HMAC-SHA256 Credential=/20250101/us-east-1/appsync/aws4_request, "
            f"SignedHeaders=host, {GOOD_SIGNATURE}",
            "credential scope",
        ),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=x-amz-date;host, {GOOD_SIGNATURE}", "sorted"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host;host, {GOOD_SIGNATURE}", "sorted"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=Host, {GOOD_SIGNATURE}", "SignedHeaders"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=x-amz-date, {GOOD_SIGNATURE}", "host"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature=abc", "signature"),
        (f"AWS4-HMAC-SHA256 {GOOD_CREDENTIAL}, SignedHeaders=host, Signature={'C' * 64}", "signature"),
    ],
)
def test_malformed_authorization_values_are_refused(value, reason):
    with pytest.raises(sigv4.SigV4Error, match=reason):
        sigv4.parse_authorization(value)


def test_amz_dates_are_parsed_as_utc():
    assert sigv4.parse_amz_date("20250102T030405Z") == dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    "value", ["", "20250102T030405", "2025-01-02T03:04:05Z", "20251302T030405Z", "x" * 16]
)
def test_malformed_amz_dates_are_refused(value):
    with pytest.raises(sigv4.SigV4Error, match="x-amz-date"):
        sigv4.parse_amz_date(value)


# -- canonical parts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "canonical"),
    [
        ("", ""),
        ("b=2&a=1", "a=1&b=2"),
        ("a=2&a=1", "a=1&a=2"),
        ("flag", "flag="),
        ("a=%2f&b=~x", "a=%2F&b=~x"),
        ("k=a+b", "k=a%2Bb"),
        ("k=a%20b&&", "k=a%20b"),
        ("%C3%A9=%E2%82%AC", "%C3%A9=%E2%82%AC"),
    ],
)
def test_canonical_query_strings(query, canonical):
    assert sigv4.canonical_query_string(query) == canonical


@pytest.mark.parametrize(
    ("raw_path", "canonical"),
    [("/event", "/event"), ("", "/"), ("/a b", "/a%20b"), ("/a%20b", "/a%2520b"), ("/~x/y", "/~x/y")],
)
def test_canonical_uris_encode_the_path_as_sent_once_more(raw_path, canonical):
    assert sigv4.canonical_uri(raw_path) == canonical


def test_header_values_are_trimmed_and_spaces_collapsed():
    headers = {"host": "  example.com ", "x-amz-date": SUITE_DATE, "x-custom": "a   b\t c"}

    assert sigv4.canonical_headers(headers, ["host", "x-amz-date", "x-custom"]) == (
        f"host:example.com\nx-amz-date:{SUITE_DATE}\nx-custom:a b c\n"
    )


# -- the bodies WebSocket clients sign --------------------------------------------------------


@pytest.mark.parametrize(
    ("channel", "events", "bodies"),
    [
        (None, None, [b"{}"]),
        ("/default/room", None, [b'{"channel":"/default/room"}']),
        ("/default/*", None, [b'{"channel":"/default/*"}']),
        (
            "/default/room",
            ['{"a":1}', '"x/y"'],
            [b'{"channel":"/default/room","events":["{\\"a\\":1}","\\"x/y\\""]}'],
        ),
        (
            "/default/room",
            ['"caf\u00e9 \u2603"'],
            [
                '{"channel":"/default/room","events":["\\"caf\u00e9 \u2603\\""]}'.encode(),
                b'{"channel":"/default/room","events":["\\"caf\\u00e9 \\u2603\\""]}',
            ],
        ),
        # A lone surrogate cannot be UTF-8: only the escaped form exists.
        ("/default/room", ['"\ud800"'], [b'{"channel":"/default/room","events":["\\"\\ud800\\""]}']),
    ],
)
def test_websocket_bodies(channel, events, bodies):
    assert sigv4.websocket_bodies(channel, events) == bodies


# -- cross-check with an independent signer -----------------------------------------------------

BOTO_CREDENTIALS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
SIGNED_AT = dt.datetime(2025, 3, 4, 5, 6, 7)
APPSYNC_HEADERS = {
    "accept": "application/json, text/javascript",
    "content-encoding": "amz-1.0",
    "content-type": "application/json; charset=UTF-8",
}


def botocore_sign(url: str, body: bytes, headers: dict[str, str]) -> tuple[AWSRequest, str]:
    """The signed request and the canonical request botocore signed."""
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    signer = SigV4Auth(BOTO_CREDENTIALS, "appsync", "eu-central-1")
    seen: list[str] = []
    canonical_request = signer.canonical_request

    def spy(request: AWSRequest) -> str:
        seen.append(canonical_request(request))
        return seen[-1]

    with (
        mock.patch("botocore.auth.get_current_datetime", return_value=SIGNED_AT),
        mock.patch.object(signer, "canonical_request", spy),
    ):
        signer.add_auth(request)
    return request, seen[0]


@pytest.mark.parametrize(
    ("url", "raw_path", "query", "body", "extra_headers"),
    [
        ("https://api.example.com/event", "/event", "", b"{}", {"host": "api.example.com"}),
        ("https://api.example.com/event", "/event", "", b'{"channel":"/default/a/b"}', {}),
        (
            "https://api.example.com/event",
            "/event",
            "",
            '{"channel":"/default/x","events":["\\"\u00e9\\""]}'.encode(),
            {"x-amz-security-token": "token/with+chars=="},
        ),
        (
            "https://api.example.com:8443/event?b=2&a=%2F",
            "/event",
            "b=2&a=%2F",
            b"{}",
            {"X-Custom": " a  b "},
        ),
        ("https://api.example.com/prefix/ev%20ent", "/prefix/ev%20ent", "", b"{}", {}),
    ],
)
def test_signatures_made_by_botocore_verify(url, raw_path, query, body, extra_headers):
    signed, botocore_canonical = botocore_sign(url, body, {**APPSYNC_HEADERS, **extra_headers})
    auth = sigv4.parse_authorization(signed.headers["Authorization"])
    headers = {name.lower(): value for name, value in signed.headers.items()}
    # botocore signs the URL's host without adding it to the request's headers.
    headers.setdefault(
        "host", SigV4Auth(BOTO_CREDENTIALS, "appsync", "eu-central-1").headers_to_sign(signed)["host"]
    )

    ours = sigv4.canonical_request(
        method="POST",
        uri=sigv4.canonical_uri(raw_path),
        query=sigv4.canonical_query_string(query),
        headers=headers,
        signed_headers=auth.signed_headers,
        payload_hash=hashlib.sha256(body).hexdigest(),
    )

    assert ours == botocore_canonical
    assert (auth.region, auth.service, auth.access_key_id) == (
        "eu-central-1",
        "appsync",
        "AKIAIOSFODNN7EXAMPLE",
    )
    assert sigv4.verify(
        parsed=auth,
        secret_access_key=BOTO_CREDENTIALS.secret_key,
        amz_date=signed.headers["X-Amz-Date"],
        method="POST",
        uri=sigv4.canonical_uri(raw_path),
        query=sigv4.canonical_query_string(query),
        headers=headers,
        payload_hash=hashlib.sha256(body).hexdigest(),
    )
