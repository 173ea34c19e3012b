"""System checks of every Redis the site names (realtime.E023-E026): one server or Sentinel."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import registry
from django.test import override_settings

from realtime.checks import check_history, check_redis
from realtime.core.redis_urls import channel_layer_host

SENTINEL_URL = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/main/0"
REDIS_CACHE = "django.core.cache.backends.redis.RedisCache"
CACHE_POOL = {"pool_class": "realtime.store.redis.CacheConnectionPool"}
URL_FORMS = (
    "redis://host:port/db, rediss://…, unix:///path, or "
    "redis+sentinel://host:port,host:port/<master name>/db (docs/DEPLOYMENT.md, 'Redis Sentinel')"
)


def layer(*hosts: Any, backend: str = "realtime.delivery.layers.RedisChannelLayer") -> dict[str, Any]:
    return {"default": {"BACKEND": backend, "CONFIG": {"hosts": list(hosts)}}}


def messages(**overrides: Any) -> list[tuple[str, str, str | None]]:
    settings: dict[str, Any] = {
        "REALTIME": {},
        "CHANNEL_LAYERS": {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}},
        "CACHES": {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        **overrides,
    }
    with override_settings(**settings):
        found = check_redis() + [m for m in check_history() if m.id == "realtime.E023"]
    return [(m.id, m.msg, m.hint) for m in found]


def test_the_check_is_registered() -> None:
    assert check_redis in registry.registry.get_checks()


def test_the_site_configured_through_sentinel_passes() -> None:
    assert (
        messages(
            REALTIME={"LIMITS_REDIS_URL": SENTINEL_URL, "HISTORY_REDIS_URL": SENTINEL_URL},
            CHANNEL_LAYERS=layer(channel_layer_host(SENTINEL_URL)),
            CACHES={"default": {"BACKEND": REDIS_CACHE, "LOCATION": [SENTINEL_URL], "OPTIONS": CACHE_POOL}},
        )
        == []
    )


def test_single_servers_pass_as_before() -> None:
    url = "redis://127.0.0.1:6379/0"
    assert (
        messages(
            REALTIME={"LIMITS_REDIS_URL": url, "HISTORY_REDIS_URL": url},
            CHANNEL_LAYERS=layer(url, ("127.0.0.1", 6380), {"address": url}),
            CACHES={"default": {"BACKEND": REDIS_CACHE, "LOCATION": url}},
        )
        == []
    )


@pytest.mark.parametrize(
    ("setting", "check_id", "otherwise"),
    [
        ("LIMITS_REDIS_URL", "realtime.E024", "None to count in each process"),
        ("HISTORY_REDIS_URL", "realtime.E023", "None to keep history in each process"),
    ],
)
def test_a_bad_url_of_limits_or_history_says_what_is_wrong(
    setting: str, check_id: str, otherwise: str
) -> None:
    assert messages(REALTIME={setting: "redis+sentinel://s1:26379"}) == [
        (
            check_id,
            f"REALTIME['{setting}']: 'redis+sentinel://s1:26379' names no master: "
            "add /<master name> after the Sentinels.",
            f"{URL_FORMS}; or {otherwise}.",
        )
    ]


LAYER_HINT = "Write each host as realtime.core.redis_urls.channel_layer_host(url) gives it."


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        (
            SENTINEL_URL,
            f"'{SENTINEL_URL}': channels_redis does not read redis+sentinel:// URLs; "
            "it needs sentinels and master_name",
        ),
        (
            "redis+sentinel://:secret@s1/main",
            "'redis+sentinel://…@s1/main': channels_redis does not read redis+sentinel:// URLs; "
            "it needs sentinels and master_name",
        ),
        (
            "tcp://s1:6379",
            "'tcp://s1:6379' has the scheme tcp://; expected one of "
            "redis://, rediss://, unix://, redis+sentinel://",
        ),
        (
            {"sentinels": [], "master_name": "main"},
            "{'sentinels': [], 'master_name': 'main'}: sentinels must be a non-empty list of (host, port)",
        ),
        (
            {"sentinels": [("s1", "26379")], "master_name": "main", "password": "secret"},
            "{'sentinels': [('s1', '26379')], 'master_name': 'main', 'password': '…'}: "
            "the Sentinel address ('s1', '26379') is not (host, port)",
        ),
        (
            {"sentinels": [("s1", 26379)]},
            "{'sentinels': [('s1', 26379)]}: a Sentinel host needs master_name, "
            "the name the Sentinels monitor",
        ),
    ],
)
def test_a_channel_layer_host_channels_redis_cannot_use_is_e025(host: Any, problem: str) -> None:
    assert messages(CHANNEL_LAYERS=layer(host)) == [
        ("realtime.E025", f"CHANNEL_LAYERS['default']['CONFIG']['hosts']: {problem}.", LAYER_HINT)
    ]


CACHE_HINT = (
    'LOCATION as a list of URLs, and OPTIONS {"pool_class": "realtime.store.redis.CacheConnectionPool"} '
    "for a Sentinel URL."
)


@pytest.mark.parametrize(
    ("cache", "problem"),
    [
        (
            {"BACKEND": REDIS_CACHE, "LOCATION": [SENTINEL_URL]},
            "a redis+sentinel:// LOCATION needs the pool_class realtime.store.redis.CacheConnectionPool",
        ),
        (
            {"BACKEND": REDIS_CACHE, "LOCATION": SENTINEL_URL, "OPTIONS": CACHE_POOL},
            "LOCATION is a string, which Django splits at commas: give a Sentinel URL in a list",
        ),
        (
            {"BACKEND": REDIS_CACHE, "LOCATION": ["memcached://m1"], "OPTIONS": CACHE_POOL},
            "'memcached://m1' has the scheme memcached://; expected one of "
            "redis://, rediss://, unix://, redis+sentinel://",
        ),
    ],
)
def test_a_redis_cache_that_cannot_reach_its_sentinels_is_e026(cache: dict[str, Any], problem: str) -> None:
    assert messages(CACHES={"default": cache}) == [
        ("realtime.E026", f"CACHES['default']: {problem}.", CACHE_HINT)
    ]


def test_channels_redis_own_layer_behind_sentinel_is_w005() -> None:
    backend = "channels_redis.core.RedisChannelLayer"

    assert messages(CHANNEL_LAYERS=layer(channel_layer_host(SENTINEL_URL), backend=backend)) == [
        (
            "realtime.W005",
            "CHANNEL_LAYERS['default'] reaches Redis through Sentinel with "
            "channels_redis.core.RedisChannelLayer, whose connections stay on a master after a manual "
            "failover demoted it: what they write until "
            "Sentinel reconfigures it (seconds) is lost.",
            "Use realtime.delivery.layers.RedisChannelLayer (the same layer; its pools follow the master).",
        )
    ]
    assert messages(CHANNEL_LAYERS=layer("redis://127.0.0.1:6379/0", backend=backend)) == []


def test_other_cache_backends_and_layers_are_not_read() -> None:
    assert (
        messages(
            CHANNEL_LAYERS={"default": {"BACKEND": "myproject.Layer", "CONFIG": {"hosts": ["whatever"]}}},
            CACHES={"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "t"}},
        )
        == []
    )


def test_the_sites_settings_send_every_redis_through_the_sentinels_of_redis_url() -> None:
    """config/settings: REDIS_URL moves the layer, the cache, the limits and the history together."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = (
        "import json; from config.settings import base as s; "
        "print(json.dumps([s.CHANNEL_LAYERS, s.CACHES, s.REALTIME['LIMITS_REDIS_URL'], "
        "s.REALTIME['HISTORY_REDIS_URL']]))"
    )
    env = {**os.environ, "REDIS_URL": SENTINEL_URL}
    root = Path(__file__).resolve().parents[2]
    shown = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=root, capture_output=True, text=True, check=True
    )
    layers, caches, limits, history = json.loads(shown.stdout)

    assert layers["default"]["BACKEND"] == "realtime.delivery.layers.RedisChannelLayer"
    assert layers["default"]["CONFIG"]["hosts"] == [json.loads(json.dumps(channel_layer_host(SENTINEL_URL)))]
    assert caches == {"default": {"BACKEND": REDIS_CACHE, "LOCATION": [SENTINEL_URL], "OPTIONS": CACHE_POOL}}
    assert limits == history == SENTINEL_URL
    checked = subprocess.run(
        [sys.executable, "manage.py", "check", "--fail-level", "WARNING"],
        env={**env, "DJANGO_SETTINGS_MODULE": "config.settings.base"},
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (checked.returncode, checked.stderr) == (0, "")
