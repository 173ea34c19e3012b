"""The site's async-native middleware: no thread for an async view, and Django's behaviour kept."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from asgiref import sync
from django.contrib.auth.models import User
from django.core.handlers import base
from django.test import AsyncClient, override_settings
from django.utils import deprecation

import config.middleware

DJANGO_STACK = [
    "django.middleware.security.SecurityMiddleware",
    "realtime.ops.middleware.RequestIdMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]


class HopCounter:
    """Counts the calls to ``sync_to_async`` made by the middleware chain and Django's adapters."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls.append(getattr(func, "__qualname__", repr(func)))
        return sync.sync_to_async(func, *args, **kwargs)


async def healthz_hops(middleware: list[str] | None = None) -> tuple[list[str], Any]:
    counter = HopCounter()
    patches = [
        mock.patch.object(module, "sync_to_async", counter)
        for module in (deprecation, base, config.middleware)
    ]
    with override_settings(**({"MIDDLEWARE": middleware} if middleware else {})):
        for patch in patches:
            patch.start()
        try:
            # The client builds its middleware chain here, under the patches.
            response = await AsyncClient().get("/healthz")
        finally:
            for patch in patches:
                patch.stop()
    return counter.calls, response


async def test_an_async_view_runs_the_whole_stack_without_a_thread_hop() -> None:
    hops, response = await healthz_hops()

    assert hops == []
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    # What the stack adds is still there.
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert len(response["X-Request-ID"]) == 32


async def test_djangos_own_stack_hops_for_every_hook() -> None:
    hops, response = await healthz_hops(DJANGO_STACK)

    assert response.status_code == 200
    # Security, the sync-only WhiteNoise, session, common, csrf, auth, messages,
    # x-frame: each process_request/process_view/process_response in a thread.
    assert len(hops) >= 10


@pytest.mark.django_db(transaction=True)
async def test_a_login_saves_the_session_and_later_requests_carry_it() -> None:
    await User.objects.acreate_user("host", password="host-pw-123", is_staff=True, is_superuser=True)
    client = AsyncClient()

    login_page = await client.get("/admin/login/")
    token = login_page.cookies["csrftoken"].value
    logged_in = await client.post(
        "/admin/login/?next=/admin/",
        {"username": "host", "password": "host-pw-123", "csrfmiddlewaretoken": token},
    )
    admin = await client.get("/admin/")

    assert (login_page.status_code, logged_in.status_code, logged_in["Location"]) == (200, 302, "/admin/")
    assert admin.status_code == 200
    assert b"host" in admin.content


@pytest.mark.django_db(transaction=True)
async def test_a_post_without_the_csrf_token_is_refused() -> None:
    await User.objects.acreate_user("host", password="host-pw-123", is_staff=True)

    response = await AsyncClient(enforce_csrf_checks=True).post(
        "/admin/login/", {"username": "host", "password": "host-pw-123"}
    )

    assert response.status_code == 403


async def test_static_files_are_still_served() -> None:
    with override_settings(WHITENOISE_USE_FINDERS=True):
        response = await AsyncClient().get("/static/quiz/quiz.css")
    response.close()

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/css")
