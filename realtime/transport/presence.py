"""``GET /event/presence?channel=...``: a channel's occupancy over HTTP (PROTOCOL §12, an extension).

Authorized exactly as a subscribe to the channel (same credentials as ``POST
/event``, same modes, same ``on_subscribe``); errors have ``POST /event``'s shape.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse
from rest_framework import serializers

from realtime.core.paths import parse_channel
from realtime.core.protocol import parse_authorization
from realtime.operations.subscribing import subscribe_authorize
from realtime.presence.service import occupancy
from realtime.transport.endpoints import endpoint
from realtime.transport.http import cors, error_response, request_info
from realtime.transport.openapi import ERRORS, PUBLISH
from realtime.transport.schema import operation


class OccupancySerializer(serializers.Serializer[object]):
    channel = serializers.CharField(help_text="The channel or wildcard counted, canonical: `/quiz/AB12/*`.")
    subscriptions = serializers.IntegerField(min_value=0, help_text="Subscriptions to exactly this channel.")
    connections = serializers.IntegerField(min_value=0, help_text="Distinct connections holding them.")


OCCUPANCY = operation(
    operation_id="occupancy",
    tags=["realtime"],
    summary="How many subscribe to a channel, across every server process",
    description=(
        "An extension to AppSync Events. `channel` is a channel or a wildcard, taken literally: "
        "`/ns/a/*` counts subscriptions to `/ns/a/*` itself. Authorized as a subscribe to it."
    ),
    security=PUBLISH.security,
    responses={200: OpenApiResponse(OccupancySerializer, description="The current counts."), **ERRORS},
    parameters=[OpenApiParameter("channel", str, OpenApiParameter.QUERY, required=True)],
)


@cors("GET, OPTIONS")
@endpoint(on_error=error_response, get=OCCUPANCY, options=None)
async def presence(request: HttpRequest) -> HttpResponse:
    """The occupancy of one channel or wildcard."""
    if request.method == "OPTIONS":
        return HttpResponse(status=204)
    raw = request.GET.get("channel", "")
    channel = parse_channel(raw, allow_wildcard=True)
    info = request_info(request)
    await subscribe_authorize(
        channel=channel, raw_channel=raw, credentials=parse_authorization(info.headers), request=info
    )
    return JsonResponse((await occupancy.read(channel)).as_dict())
