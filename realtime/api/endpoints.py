"""Plain async Django views as JSON endpoints, the one HTTP style of ``realtime`` and ``quiz``.

DRF's request wrapping, content negotiation and rendering cost more than all
the rest of a join or a publish on the event loop (docs/HTTP.md has the
figures), and the JSON endpoints use none of its features. So each is an
``async def`` taking Django's ``HttpRequest``, decorated once::

    @endpoint("POST", on_error=error_response)
    async def join(request: HttpRequest, code: str) -> HttpResponse: ...

:func:`endpoint` gives every such view the same contract:

- a method not named is refused as :class:`MethodNotAllowed` (405, ``Allow``);
  naming ``get`` admits ``HEAD`` too, as Django's class-based views do;
- every exception the view raises leaves through ``on_error``, the app's one
  error renderer, so no view builds an error body;
- the view is ``csrf_exempt``: Django's middleware would answer a failed check
  with its HTML 403 page. A view that trusts a session cookie calls
  :func:`csrf_failure` itself and raises its own error (DRF's
  ``SessionAuthentication`` does the same).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from .parsers import RequestError

View = Callable[..., Awaitable[HttpResponse]]
ErrorRenderer = Callable[[Exception], HttpResponse]


class MethodNotAllowed(RequestError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f'Method "{method}" not allowed.', {"Allow": ", ".join(allowed)})


def endpoint(*methods: str, on_error: ErrorRenderer) -> Callable[[View], View]:
    """Make an async view a JSON endpoint (module docstring).

    Args:
        methods: the HTTP methods the view answers (``"POST"``, ``"GET"``...).
        on_error: the app's error renderer; it must answer every exception.
    """
    allowed = tuple(method.upper() for method in methods)
    if "GET" in allowed and "HEAD" not in allowed:
        allowed += ("HEAD",)

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def respond(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in allowed:
                    raise MethodNotAllowed(request.method or "", allowed)
                return await view(request, *args, **kwargs)
            except Exception as error:
                return on_error(error)

        return csrf_exempt(respond)

    return decorate


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request: HttpRequest, reason: str) -> Any:
        # The reason itself, for the caller's own error, instead of Django's HTML page.
        return reason


def csrf_failure(request: HttpRequest) -> str | None:
    """Why Django's CSRF check refuses ``request`` (``None``: it passes; safe methods always do)."""
    check = _CsrfCheck(lambda request: HttpResponse())
    check.process_request(request)
    reason: str | None = check.process_view(request, lambda request: HttpResponse(), (), {})
    return reason
