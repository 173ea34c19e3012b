"""``POST /event`` in the OpenAPI document (PROTOCOL §2): its bodies and its operation.

The serializers describe the bodies only: the view reads requests by hand (a DRF
serializer costs ~130 µs a request on the event loop), and drf-spectacular
turns these classes into components.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers

from realtime.transport.schema import SecurityScheme, operation, retry_after, session_cookie


class PublishRequestSerializer(serializers.Serializer[Any]):
    channel = serializers.CharField(
        help_text="A concrete channel path (no wildcard), with or without a leading `/`: `/default/room`."
    )
    events = serializers.ListField(
        child=serializers.CharField(),
        min_length=1,
        max_length=5,
        help_text='1 to 5 events, each one JSON value serialised as a string: `"{\\"a\\":1}"`, `"1"`.',
    )


class PublishedEventSerializer(serializers.Serializer[Any]):
    identifier = serializers.UUIDField(help_text="The event's id (handlers see it as `ctx.events[i].id`).")
    index = serializers.IntegerField(min_value=0, help_text="Its position in the request's `events`.")


@extend_schema_field({"type": ["string", "integer"]})
class FailureCodeField(serializers.Field):  # type: ignore[type-arg]
    """A string here (``EventTooLargeException``); some clients decode an integer (PROTOCOL §2.2)."""


class FailedEventSerializer(PublishedEventSerializer):
    code = FailureCodeField(help_text="`BadRequestException`, `EventTooLargeException`, a handler's code.")
    message = serializers.CharField()


class PublishResponseSerializer(serializers.Serializer[Any]):
    successful = PublishedEventSerializer(many=True)
    failed = FailedEventSerializer(many=True, help_text="Events refused one by one; always present.")


class AppSyncErrorSerializer(serializers.Serializer[Any]):
    errorType = serializers.CharField(  # the wire's name
        help_text="`BadRequestException`, `UnauthorizedException`, `LimitExceededError`..."
    )
    message = serializers.CharField(required=False, help_text="Absent for an unknown namespace.")


class AppSyncErrorsSerializer(serializers.Serializer[Any]):
    # The wire's name. DRF's metaclass takes declared fields off the class, so
    # Serializer.errors is not shadowed at run time; the stubs cannot know that.
    errors = AppSyncErrorSerializer(many=True)  # type: ignore[assignment]


def _error(description: str) -> OpenApiResponse:
    return OpenApiResponse(AppSyncErrorsSerializer, description=description)


ERRORS = {
    400: _error("`BadRequestException`: more than 5 events or none, a bad channel, a malformed body."),
    401: _error("`UnauthorizedException`: no or wrong credentials, or an unknown namespace (no message)."),
    403: _error("`BadRequestException`: an `on_publish` handler rejected the whole publish."),
    405: _error("`BadRequestException`: only POST, and OPTIONS for a CORS preflight."),
    413: _error("`BadRequestException`: the body is larger than the server reads."),
    415: _error("`BadRequestException`: the body is not `application/json`."),
    429: _error("`LimitExceededError`: too many failed authorizations from this address."),
    500: _error("`InternalFailure` or `HandlerError`: a fault on the server."),
    503: _error("`ServiceUnavailable`: the database or the channel layer is unreachable."),
    504: _error("`HandlerTimeout`: an `on_publish` handler ran out of time."),
}

PUBLISH_SECURITY: dict[str, SecurityScheme] = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key", "description": "API_KEY mode."},
    "authorization": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "OIDC (a JWT), CUSTOM (the authorizer's token) or IAM (SigV4, with `x-amz-date`).",
    },
    "session": session_cookie,
}

PUBLISH = operation(
    operation_id="publish",
    tags=["realtime"],
    summary="Publish 1 to 5 events to one channel",
    description=(
        "AppSync Events' HTTP publish. The events reach every subscriber of the channel and of the "
        "wildcards above it; events refused one by one (not JSON, too large, failed by a handler) are "
        "listed in `failed`, still with status 200. Any mode the namespace allows authorizes."
    ),
    security=PUBLISH_SECURITY,
    request=PublishRequestSerializer,
    responses={
        200: OpenApiResponse(PublishResponseSerializer, description="Published; `failed` lists refusals."),
        **ERRORS,
    },
    parameters=[
        OpenApiParameter(
            "x-amzn-ErrorType",
            str,
            OpenApiParameter.HEADER,
            response=list(ERRORS),
            description="The error's `errorType` again (Amplify reads it here).",
        ),
        retry_after(429, 503),
    ],
)


class HistoryEventSerializer(serializers.Serializer[Any]):
    offset = serializers.IntegerField(min_value=1, help_text="Its position in the channel's stream.")
    event = serializers.CharField(help_text="The event's JSON text, as a `data` frame carries it.")


class HistoryPageSerializer(serializers.Serializer[Any]):
    channel = serializers.CharField()
    epoch = serializers.CharField(help_text="Names the stream; it changes when the history is lost.")
    offset = serializers.IntegerField(min_value=0, help_text="The stream's last publication (0: none yet).")
    complete = serializers.BooleanField(
        help_text="Every publication after `since` is here (nothing trimmed, none beyond `limit`)."
    )
    events = HistoryEventSerializer(many=True, help_text="Oldest first.")


HISTORY = operation(
    operation_id="history",
    tags=["realtime"],
    summary="Read a channel's history",
    description=(
        "The publications of a channel (or a wildcard) of a namespace that keeps history, after the "
        "offset `since` (without it, the latest), oldest first (PROTOCOL §12). Authorized like a "
        "subscribe: the namespace's subscribe modes, then its `on_subscribe` handler."
    ),
    security=PUBLISH_SECURITY,
    responses={
        200: OpenApiResponse(HistoryPageSerializer, description="A page of the channel's history."),
        **ERRORS,
    },
    parameters=[
        OpenApiParameter("channel", str, OpenApiParameter.QUERY, required=True, description="`/chat/room`."),
        OpenApiParameter("since", int, OpenApiParameter.QUERY, description="The last offset the reader has."),
        OpenApiParameter(
            "epoch", str, OpenApiParameter.QUERY, description="The epoch of `since` (another: it is lost)."
        ),
        OpenApiParameter(
            "limit", int, OpenApiParameter.QUERY, description="1 to `HISTORY_RECOVER_LIMIT` (the default)."
        ),
        retry_after(429, 503),
    ],
)
