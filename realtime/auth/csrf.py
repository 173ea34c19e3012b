"""Django's CSRF check as a question, for endpoints that trust a session cookie.

The JSON endpoints are ``csrf_exempt`` (:mod:`realtime.transport.endpoints`):
Django's middleware would answer a failed check with its HTML page. One that
authenticates by session cookie asks :func:`csrf_failure` and raises its own
error in its own shape instead.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponseBase, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware


def _no_view(request: HttpRequest) -> HttpResponseBase:
    """Stands for the view and the rest of the chain: the CSRF check calls neither."""
    raise AssertionError("the CSRF check does not call the view")


class _CsrfCheck(CsrfViewMiddleware):
    reason: str | None = None

    def _reject(self, request: HttpRequest, reason: str) -> HttpResponseForbidden:
        # Keep the reason for the caller's own error; Django's would render its HTML page.
        self.reason = reason
        return HttpResponseForbidden()


def csrf_failure(request: HttpRequest) -> str | None:
    """Why Django's CSRF check refuses ``request`` (``None``: it passes; safe methods always do)."""
    check = _CsrfCheck(_no_view)
    check.process_request(request)
    check.process_view(request, _no_view, (), {})
    return check.reason
