"""Shared fixtures: a fresh hub per test, API keys, and WebSocket helpers."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers
from django.db import connections

from realtime.state import reset_all
from realtime.transport.overload import overload


def pytest_unconfigure(config: pytest.Config) -> None:
    # The SQLite test database's directory (config/settings/test.py): a pytest-xdist worker
    # ends without running atexit hooks, so each process removes its own here too.
    settings_module = sys.modules.get("config.settings.test")
    directory = getattr(settings_module, "_test_database_dir", None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(autouse=True)
def _fresh_caches():
    # Caches and rate limiters are per process: each test starts with a clean slate.
    reset_all()
    # A layer instance outlives the test's loop: channels_redis would hand the next
    # test a receive lock still held by the last test's (cancelled) hub loop.
    channel_layers.backends.clear()
    yield
    reset_all()


@pytest.fixture(autouse=True)
async def _close_executor_connections():
    """Close what the async ORM opened in asgiref's executor thread during a test.

    Without this, PostgreSQL refuses to drop the test database at the end
    ("being accessed by other users").
    """
    yield
    await sync_to_async(connections.close_all)()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """Let PostgreSQL drop the test database even if a worker thread still holds a session.

    Threads of per-test event loops (sync handlers, custom authorizers) may die
    with a connection open; a long-running server reuses its threads instead.
    """
    yield
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture
def calm() -> Iterator[None]:
    """The process keeps up, whatever the machine running the suite is doing meanwhile:
    the tests of rates and marks are not at the mercy of the overload measures."""
    with (
        mock.patch.object(overload, "admits", return_value=True),
        mock.patch.object(overload, "on_time", return_value=True),
    ):
        yield


@pytest.fixture
def overloaded(calm: None) -> Iterator[None]:
    """The front door's overload measure says the process is full (and nothing else changes)."""
    with mock.patch.object(overload, "admits", return_value=False):
        yield
