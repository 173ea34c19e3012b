"""Staff pages served by ``realtime``."""

from __future__ import annotations

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from realtime.store.selectors import namespace_names


@staff_member_required
def console(request: HttpRequest) -> HttpResponse:
    """Publish and subscribe from the browser with the shipped JS client.

    The page also gets the namespaces' names: AppSync answers an operation on a namespace
    that does not exist with a bare ``UnauthorizedException`` (PROTOCOL §2.3), and the
    console tells the two apart for the person at the keyboard, the wire staying AppSync's.
    """
    try:
        namespaces_url: str | None = reverse("admin:realtime_namespace_changelist")
    except NoReverseMatch:  # a project without the admin's namespace pages
        namespaces_url = None
    context = {
        "http_endpoint": request.build_absolute_uri("/event"),
        "namespaces": {"names": namespace_names(), "admin_url": namespaces_url},
    }
    return render(request, "realtime/console.html", context)
