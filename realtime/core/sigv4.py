"""AWS Signature Version 4, the verifying side (PROTOCOL §5.3). Pure: no Django, no I/O.

The IAM authorizer (:mod:`realtime.auth.iam`) parses an
``Authorization: AWS4-HMAC-SHA256 ...`` value with :func:`parse_authorization`,
rebuilds the canonical request the client signed with :func:`canonical_request`
and recomputes the signature with :func:`signature`. Names follow the AWS
documentation ("Create a canonical request", "Create a string to sign",
"Calculate the signature").

The WebSocket bodies AppSync Events clients sign (``{}``, ``{"channel":...}``,
``{"channel":...,"events":[...]}``) are built by :func:`websocket_bodies`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
_AMZ_DATE = re.compile(r"\d{8}T\d{6}Z\Z")
_SCOPE_DATE = re.compile(r"\d{8}\Z")
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9a-z-]+\Z")


class SigV4Error(ValueError):
    """A malformed SigV4 authorization value (the reason is safe to log)."""


@dataclass(frozen=True, slots=True)
class ParsedAuthorization:
    """The three parts of ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``."""

    access_key_id: str
    date: str  # YYYYMMDD of the credential scope
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str

    @property
    def credential_scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/{TERMINATOR}"


def parse_authorization(value: str) -> ParsedAuthorization:
    """Parse an ``Authorization`` header value.

    Components are separated by commas and/or spaces, in any order, as clients
    differ (botocore writes ``", "``, some signers a bare ``","``).

    Raises:
        SigV4Error: not SigV4, a missing or repeated component, a bad scope.
    """
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise SigV4Error("not an AWS4-HMAC-SHA256 authorization")
    parts: dict[str, str] = {}
    for item in re.split(r"[,\s]+", rest.strip()):
        if not item:
            continue
        name, sep, component = item.partition("=")
        if not sep or name in parts:
            raise SigV4Error("malformed authorization component")
        parts[name] = component
    if set(parts) != {"Credential", "SignedHeaders", "Signature"}:
        raise SigV4Error("authorization needs exactly Credential, SignedHeaders and Signature")

    credential = parts["Credential"].split("/")
    if len(credential) != 5 or credential[4] != TERMINATOR or not all(credential):
        raise SigV4Error("malformed credential scope")
    access_key_id, date, region, service, _ = credential
    if not _SCOPE_DATE.match(date):
        raise SigV4Error("malformed credential scope date")

    signed_headers = tuple(parts["SignedHeaders"].split(";"))
    if not all(_HEADER_NAME.match(name) for name in signed_headers):
        raise SigV4Error("malformed SignedHeaders")
    if list(signed_headers) != sorted(set(signed_headers)):
        raise SigV4Error("SignedHeaders must be sorted and unique")
    if "host" not in signed_headers:
        raise SigV4Error("host is not a signed header")

    signature_hex = parts["Signature"]
    if not _HEX_SHA256.match(signature_hex):
        raise SigV4Error("malformed signature")
    return ParsedAuthorization(access_key_id, date, region, service, signed_headers, signature_hex)


def parse_amz_date(value: str) -> datetime:
    """``YYYYMMDD'T'HHMMSS'Z'`` as an aware UTC datetime.

    Raises:
        SigV4Error: any other shape.
    """
    if not _AMZ_DATE.match(value):
        raise SigV4Error("malformed x-amz-date")
    try:
        return datetime.strptime(value, AMZ_DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise SigV4Error("malformed x-amz-date") from None


def uri_encode(value: str, *, encode_slash: bool = True) -> str:
    """RFC 3986 percent-encoding as SigV4 wants it: only ``A-Za-z0-9-_.~`` stay as they are.

    Paths keep their ``/`` (``encode_slash=False``); query names and values do not.
    """
    return quote(value, safe="-_.~" if encode_slash else "-_.~/")


def canonical_uri(raw_path: str) -> str:
    """The canonical URI of a path *as it was sent* (percent-encoded).

    Every AWS service but S3 encodes the path twice: once when the URL is made,
    once more here (botocore: ``quote(path, safe="/~")``).
    """
    return quote(raw_path or "/", safe="/~")


def canonical_query_string(query: str) -> str:
    """The canonical form of a raw query string: pairs decoded, re-encoded, sorted."""
    pairs: list[tuple[str, str]] = []
    for item in query.split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((uri_encode(unquote(name)), uri_encode(unquote(value))))
    return "&".join(f"{name}={value}" for name, value in sorted(pairs))


def canonical_header_value(value: str) -> str:
    """Trim the value and collapse runs of spaces, as every SigV4 signer does."""
    return " ".join(value.split())


def canonical_headers(headers: Mapping[str, str], signed_headers: Sequence[str]) -> str:
    """``name:value\\n`` for each signed header, in the order of ``signed_headers``.

    ``headers`` must have lowercased names.

    Raises:
        SigV4Error: a signed header has no value.
    """
    lines = []
    for name in signed_headers:
        value = headers.get(name)
        if value is None:
            raise SigV4Error(f"signed header {name!r} is missing")
        lines.append(f"{name}:{canonical_header_value(value)}\n")
    return "".join(lines)


def canonical_request(
    *,
    method: str,
    uri: str,
    query: str,
    headers: Mapping[str, str],
    signed_headers: Sequence[str],
    payload_hash: str,
) -> str:
    """The canonical request; ``uri`` and ``query`` are already canonical."""
    return "\n".join(
        [
            method.upper(),
            uri,
            query,
            canonical_headers(headers, signed_headers),
            ";".join(signed_headers),
            payload_hash,
        ]
    )


def string_to_sign(*, amz_date: str, credential_scope: str, canonical_request: str) -> str:
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    return "\n".join([ALGORITHM, amz_date, credential_scope, digest])


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_key(*, secret_access_key: str, date: str, region: str, service: str) -> bytes:
    k_date = _hmac(("AWS4" + secret_access_key).encode("utf-8"), date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return _hmac(k_service, TERMINATOR)


def signature(*, secret_access_key: str, date: str, region: str, service: str, string_to_sign: str) -> str:
    """The hex signature of ``string_to_sign``."""
    key = signing_key(secret_access_key=secret_access_key, date=date, region=region, service=service)
    return hmac.new(key, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()


def payload_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _compact(value: object, *, ensure_ascii: bool) -> str:
    # json.dumps never escapes "/", which is what Swift's signer also needs.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=ensure_ascii)


def websocket_bodies(channel: str | None = None, events: Iterable[object] | None = None) -> list[bytes]:
    """The bodies a WebSocket client may have signed for an operation (PROTOCOL §5.3).

    ``{}`` for connect (no channel), ``{"channel":...}`` for subscribe and
    ``{"channel":...,"events":[...]}`` for publish. JavaScript leaves non-ASCII
    characters as they are while Python escapes them, so both encodings are
    returned when they differ; a text that cannot be UTF-8 (a lone surrogate)
    only has its escaped form.
    """
    if channel is None:
        return [b"{}"]
    body: dict[str, object] = {"channel": channel}
    if events is not None:
        body["events"] = list(events)
    candidates: list[bytes] = []
    for ensure_ascii in (False, True):
        try:
            encoded = _compact(body, ensure_ascii=ensure_ascii).encode("utf-8")
        except UnicodeEncodeError:
            continue
        if encoded not in candidates:
            candidates.append(encoded)
    return candidates


def verify(
    *,
    parsed: ParsedAuthorization,
    secret_access_key: str,
    amz_date: str,
    method: str,
    uri: str,
    query: str,
    headers: Mapping[str, str],
    payload_hash: str,
) -> bool:
    """Whether ``parsed.signature`` signs this request with ``secret_access_key``.

    Raises:
        SigV4Error: a signed header is missing from ``headers``.
    """
    request = canonical_request(
        method=method,
        uri=uri,
        query=query,
        headers=headers,
        signed_headers=parsed.signed_headers,
        payload_hash=payload_hash,
    )
    expected = signature(
        secret_access_key=secret_access_key,
        date=parsed.date,
        region=parsed.region,
        service=parsed.service,
        string_to_sign=string_to_sign(
            amz_date=amz_date, credential_scope=parsed.credential_scope, canonical_request=request
        ),
    )
    return hmac.compare_digest(expected, parsed.signature)
