"""Shared fixtures: a fresh hub per test, API keys, and WebSocket helpers."""

from __future__ import annotations

import pytest

from realtime.selectors import api_key_cache, namespace_cache


@pytest.fixture(autouse=True)
def _fresh_caches():
    namespace_cache.clear()
    api_key_cache.clear()
    yield
    namespace_cache.clear()
    api_key_cache.clear()
