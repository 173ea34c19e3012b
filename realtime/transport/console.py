"""Staff pages served by ``realtime``."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@staff_member_required
def console(request: HttpRequest) -> HttpResponse:
    """Publish and subscribe from the browser with the shipped JS client."""
    return render(request, "realtime/console.html", {"http_endpoint": request.build_absolute_uri("/event")})
