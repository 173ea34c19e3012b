"""``realtime.transport.endpoints``: the contract every plain JSON view of the site gets."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.test import AsyncRequestFactory, Client, RequestFactory

from realtime.auth.csrf import csrf_failure
from realtime.transport.endpoints import MethodNotAllowed, endpoint
from realtime.transport.parsers import RequestError
from realtime.transport.schema import OPENAPI_ATTRIBUTE, operation

READ = operation(operation_id="read")


def render(error: Exception) -> JsonResponse:
    """A renderer that shows what it was given."""
    headers = error.headers if isinstance(error, RequestError) else {}
    return JsonResponse({"error": type(error).__name__, "message": str(error)}, status=418, headers=headers)


@endpoint(on_error=render, get=READ, delete=None)
async def view(request: HttpRequest, fail: str = "") -> HttpResponse:
    if fail:
        raise ValueError(fail)
    return JsonResponse({"method": request.method})


async def call(method: str, **kwargs: Any) -> HttpResponse:
    return await view(AsyncRequestFactory().generic(method, "/x"), **kwargs)


@pytest.mark.parametrize("method", ["GET", "HEAD", "DELETE"])
async def test_the_methods_named_reach_the_view_and_get_admits_head(method) -> None:
    response = await call(method)

    assert (response.status_code, json.loads(response.content)) == (200, {"method": method})


@pytest.mark.parametrize("method", ["POST", "PUT", "OPTIONS"])
async def test_another_method_goes_to_the_renderer_as_405_with_allow(method) -> None:
    response = await call(method)

    assert (response.status_code, response["Allow"], json.loads(response.content)) == (
        418,
        "GET, DELETE, HEAD",
        {"error": "MethodNotAllowed", "message": f'Method "{method}" not allowed.'},
    )


async def test_every_exception_of_the_view_goes_to_the_renderer() -> None:
    response = await call("GET", fail="boom")

    assert (response.status_code, json.loads(response.content)) == (
        418,
        {"error": "ValueError", "message": "boom"},
    )


def test_the_view_is_csrf_exempt_and_carries_its_documented_operations() -> None:
    assert view.csrf_exempt is True  # type: ignore[attr-defined]
    assert getattr(view, OPENAPI_ATTRIBUTE) == {"get": READ}
    assert view.__name__ == "view"


def test_method_not_allowed_is_a_neutral_request_error() -> None:
    error = MethodNotAllowed("PUT", ("POST", "OPTIONS"))

    assert (error.status, error.code, error.message, error.headers) == (
        405,
        "method_not_allowed",
        'Method "PUT" not allowed.',
        {"Allow": "POST, OPTIONS"},
    )


@pytest.mark.django_db
def test_csrf_failure_gives_the_reason_for_an_unsafe_method_without_the_token() -> None:
    client = Client()
    client.force_login(User.objects.create_user("alice", password="pw-alice-123"))
    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    factory = RequestFactory()

    def made(method: str, **headers: str) -> HttpRequest:
        request = factory.generic(method, "/x", headers=headers)
        request.COOKIES["csrftoken"] = token
        return request

    assert csrf_failure(made("POST")) == "CSRF token missing."
    assert (
        csrf_failure(made("POST", x_csrftoken="a" * 64))
        == "CSRF token from the 'X-Csrftoken' HTTP header incorrect."
    )
    assert csrf_failure(made("POST", x_csrftoken=token)) is None
    assert csrf_failure(made("GET")) is None
