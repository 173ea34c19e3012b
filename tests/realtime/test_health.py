"""Health endpoints for load balancers."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import AsyncClient


async def test_healthz_answers_without_the_database() -> None:
    response = await AsyncClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db(transaction=True)
async def test_readyz_is_ok_when_the_database_and_layer_answer() -> None:
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}}


@pytest.mark.django_db(transaction=True)
async def test_readyz_is_503_when_the_database_is_down() -> None:
    with mock.patch("realtime.ops.health._database_ok", side_effect=OperationalError("down")):
        response = await AsyncClient().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "checks": {"database": "unavailable", "channel_layer": "ok"},
    }
