"""The site's URLs plus ``POST /e2e/commit``: server code that publishes on commit, as a test drives it."""

from __future__ import annotations

import json

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

import realtime
from config.urls import urlpatterns as site_urlpatterns


@csrf_exempt
@require_POST
def commit(request: HttpRequest) -> JsonResponse:
    """``{"channel", "key", "events"}``: written with ``publish_on_commit`` in a transaction, then 201."""
    body = json.loads(request.body)
    with transaction.atomic():
        realtime.publish_on_commit(body["channel"], body["events"], key=body["key"])
    return JsonResponse({"key": body["key"]}, status=201)


urlpatterns = [path("e2e/commit", commit), *site_urlpatterns]
