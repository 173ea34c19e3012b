"""Plain async Django views as JSON endpoints, the one HTTP style of ``realtime`` and ``quiz``.

DRF's request wrapping, content negotiation and rendering cost more than all
the rest of a join or a publish on the event loop (docs/HTTP.md has the
figures), and the JSON endpoints use none of its features. So each is an
``async def`` taking Django's ``HttpRequest``, decorated once::

    @endpoint(on_error=error_response, post=operation(...))
    async def join(request: HttpRequest, code: str) -> HttpResponse: ...

:func:`endpoint` gives every such view the same contract:

- a method not named is refused as :class:`MethodNotAllowed` (405, ``Allow``);
  naming ``get`` admits ``HEAD`` too, as Django's class-based views do;
- every exception the view raises leaves through ``on_error``, the app's one
  error renderer, so no view builds an error body;
- the view is ``csrf_exempt``: Django's middleware would answer a failed check
  with its HTML 403 page. A view that trusts a session cookie calls
  :func:`realtime.auth.csrf.csrf_failure` itself and raises its own error (DRF's
  ``SessionAuthentication`` does the same);
- the :class:`~realtime.transport.schema.Operation` given for a method is that
  method's OpenAPI description (:mod:`realtime.transport.schema`); ``None`` keeps the
  method out of the document (a CORS preflight, say).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from realtime.transport.parsers import RequestError
from realtime.transport.schema import OPENAPI_ATTRIBUTE, Operation

View = Callable[..., Awaitable[HttpResponse]]
ErrorRenderer = Callable[[Exception], HttpResponse]


class MethodNotAllowed(RequestError):
    status = 405
    code = "method_not_allowed"

    def __init__(self, method: str, allowed: tuple[str, ...]) -> None:
        super().__init__(f'Method "{method}" not allowed.', {"Allow": ", ".join(allowed)})


def endpoint(*, on_error: ErrorRenderer, **operations: Operation | None) -> Callable[[View], View]:
    """Make an async view a JSON endpoint (module docstring).

    Args:
        on_error: the app's error renderer; it must answer every exception.
        operations: one keyword per HTTP method the view answers, in lower case
            (``post=``, ``get=``, ``options=``), each the method's OpenAPI
            description or ``None``.
    """
    allowed = tuple(method.upper() for method in operations)
    if "GET" in allowed and "HEAD" not in allowed:
        allowed += ("HEAD",)
    documented = {method: op for method, op in operations.items() if op is not None}

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def respond(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in allowed:
                    raise MethodNotAllowed(request.method or "", allowed)
                return await view(request, *args, **kwargs)
            except Exception as error:
                return on_error(error)

        setattr(respond, OPENAPI_ATTRIBUTE, documented)
        return csrf_exempt(respond)

    return decorate
