"""``IAM``: AWS Signature Version 4, verified against :class:`~realtime.models.IamCredential` rows.

The credentials are the authorization object of PROTOCOL §5.2 (``host``,
``x-amz-date``, ``authorization: AWS4-HMAC-SHA256 ...`` and the other headers
named in ``SignedHeaders``). What was signed depends on the transport
(PROTOCOL §5.3):

* WebSocket operations sign ``POST /event`` with an empty query and a body
  rebuilt from the operation: ``{}`` (connect), ``{"channel":...}`` (subscribe),
  ``{"channel":...,"events":[...]}`` (publish).
* HTTP publish signs the request itself: its path, query, headers and body bytes.

The policy half of IAM lives on the credential row: ``can_connect``,
``publish_namespaces`` and ``subscribe_namespaces``.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Mapping
from typing import NoReturn

from django.utils import timezone

from realtime.auth import AuthRequest, BaseAuthorizer, Identity, Operation
from realtime.conf import realtime_settings
from realtime.core import sigv4
from realtime.exceptions import Transport, Unauthorized
from realtime.store.selectors import IamCredentialInfo, iam_credential_get

logger = logging.getLogger(__name__)

WEBSOCKET_METHOD = "POST"
WEBSOCKET_URI = "/event"
ALL_NAMESPACES = "*"


class IamAuthorizer(BaseAuthorizer):
    mode = "IAM"

    async def authenticate(self, credentials: Mapping[str, str], auth: AuthRequest) -> Identity | None:
        authorization = credentials.get("authorization")
        if authorization is None or not authorization.lstrip().startswith(sigv4.ALGORITHM):
            return None
        try:
            credential = await self._verify(authorization, credentials, auth)
        except sigv4.SigV4Error as error:
            _refuse(auth, str(error))
        self._check_policy(credential, auth)
        return Identity(
            mode=self.mode,
            context={
                "accountId": credential.account_id,
                "cognitoIdentityPoolId": None,
                "cognitoIdentityId": None,
                "sourceIp": [auth.request.source_ip] if auth.request.source_ip else [],
                "username": credential.username,
                "userArn": credential.user_arn,
                "cognitoIdentityAuthType": None,
                "cognitoIdentityAuthProvider": None,
            },
        )

    async def _verify(
        self, authorization: str, credentials: Mapping[str, str], auth: AuthRequest
    ) -> IamCredentialInfo:
        """The credential whose secret signed this request.

        Raises:
            SigV4Error: malformed values (turned into Unauthorized by the caller).
            Unauthorized: anything else that does not check out.
        """
        settings = realtime_settings.iam
        parsed = sigv4.parse_authorization(authorization)
        if parsed.region != settings["REGION"] or parsed.service != settings["SERVICE"]:
            _refuse(auth, f"credential scope {parsed.region}/{parsed.service} is not this API's")

        amz_date = credentials.get("x-amz-date")
        if amz_date is None:
            _refuse(auth, "no x-amz-date")
        signed_at = sigv4.parse_amz_date(amz_date)
        if amz_date[:8] != parsed.date:
            _refuse(auth, "x-amz-date does not match the credential scope date")
        if abs((timezone.now() - signed_at).total_seconds()) > float(settings["MAX_CLOCK_SKEW"]):
            _refuse(auth, f"signed at {signed_at:%Y-%m-%dT%H:%M:%SZ}, outside the allowed clock skew")

        credential = await iam_credential_get(access_key_id=parsed.access_key_id)
        if credential is None:
            _refuse(auth, f"unknown access key {parsed.access_key_id}")
        if credential.revoked:
            _refuse(auth, f"revoked access key {parsed.access_key_id}")

        if auth.request.transport is Transport.HTTP and auth.http_body is not None:
            matched = self._verify_http(parsed, credential, amz_date, auth)
        else:
            matched = self._verify_websocket(parsed, credential, amz_date, credentials, auth)
        if not matched:
            _refuse(auth, f"signature mismatch for access key {parsed.access_key_id}")
        return credential

    def _verify_websocket(
        self,
        parsed: sigv4.ParsedAuthorization,
        credential: IamCredentialInfo,
        amz_date: str,
        credentials: Mapping[str, str],
        auth: AuthRequest,
    ) -> bool:
        # Signed header values come from the authorization object; a name it
        # lacks (a bare botocore signer leaves ``host`` out of its headers) is
        # read from the upgrade request, which is what such a client sent.
        headers = {**auth.request.headers, **credentials}
        if auth.operation is Operation.CONNECT:
            bodies = sigv4.websocket_bodies()
        elif auth.operation is Operation.SUBSCRIBE:
            bodies = sigv4.websocket_bodies(_required(auth.channel))
        else:
            bodies = sigv4.websocket_bodies(_required(auth.channel), auth.events or ())
        hashes = [sigv4.payload_hash(body) for body in bodies]
        declared = credentials.get("x-amz-content-sha256")
        if declared is not None:
            # The Kotlin (Smithy) signer sends the body hash along: it must
            # still be the hash of this operation's body.
            if not any(hmac.compare_digest(declared, digest) for digest in hashes):
                _refuse(auth, "x-amz-content-sha256 is not the hash of the operation's body")
            hashes = [declared]
        return any(
            sigv4.verify(
                parsed=parsed,
                secret_access_key=credential.secret_access_key,
                amz_date=amz_date,
                method=WEBSOCKET_METHOD,
                uri=WEBSOCKET_URI,
                query="",
                headers=headers,
                payload_hash=digest,
            )
            for digest in hashes
        )

    def _verify_http(
        self,
        parsed: sigv4.ParsedAuthorization,
        credential: IamCredentialInfo,
        amz_date: str,
        auth: AuthRequest,
    ) -> bool:
        body = auth.http_body or b""
        digest = sigv4.payload_hash(body)
        declared = auth.request.headers.get("x-amz-content-sha256")
        if declared is not None and not hmac.compare_digest(declared, digest):
            _refuse(auth, "x-amz-content-sha256 is not the hash of the body")
        raw_path, query = _http_target(auth)
        return sigv4.verify(
            parsed=parsed,
            secret_access_key=credential.secret_access_key,
            amz_date=amz_date,
            method="POST",
            uri=sigv4.canonical_uri(raw_path),
            query=sigv4.canonical_query_string(query),
            headers={name.lower(): value for name, value in auth.request.headers.items()},
            payload_hash=digest,
        )

    def _check_policy(self, credential: IamCredentialInfo, auth: AuthRequest) -> None:
        """The IAM policy check: appsync:EventConnect / EventPublish / EventSubscribe."""
        if auth.operation is Operation.CONNECT:
            if not credential.can_connect:
                _refuse(auth, f"access key {credential.access_key_id} may not connect")
            return
        allowed = (
            credential.publish_namespaces
            if auth.operation is Operation.PUBLISH
            else credential.subscribe_namespaces
        )
        if ALL_NAMESPACES not in allowed and auth.namespace not in allowed:
            _refuse(
                auth,
                f"access key {credential.access_key_id} may not {auth.operation.lower()} "
                f"in namespace {auth.namespace!r}",
            )


def _http_target(auth: AuthRequest) -> tuple[str, str]:
    """The path as sent and the raw query string of an HTTP publish."""
    scope = auth.request.scope
    http_request = getattr(auth.request, "http_request", None)
    if scope is None and http_request is not None:
        scope = getattr(http_request, "scope", None)
    if not scope:
        return WEBSOCKET_URI, ""
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes) and raw_path:
        path = raw_path.decode("latin-1").partition("?")[0]
    else:
        path = sigv4.uri_encode(str(scope.get("path") or WEBSOCKET_URI), encode_slash=False)
    query = scope.get("query_string") or b""
    return path, query.decode("latin-1") if isinstance(query, bytes) else str(query)


def _required(value: str | None) -> str:
    if value is None:
        raise sigv4.SigV4Error("no channel to verify the signature against")
    return value


def _refuse(auth: AuthRequest, reason: str) -> NoReturn:
    logger.info("IAM authorization refused for %s: %s", auth.operation.value, reason)
    raise Unauthorized()
