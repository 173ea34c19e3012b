"""System checks for ``REALTIME`` settings and the channel layer (ids ``realtime.E0xx``/``W0xx``)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from realtime.conf import DEFAULTS, realtime_settings
from realtime.core.rates import parse_limit
from realtime.core.redis_urls import SENTINEL_SCHEME, SentinelTarget, parse_redis_url
from realtime.store.redis import CacheConnectionPool

CACHE_POOL = "realtime.store.redis.CacheConnectionPool"
REDIS_LAYER = "realtime.delivery.layers.RedisChannelLayer"


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    unknown = realtime_settings.user_keys() - DEFAULTS.keys()
    if unknown:
        messages.append(
            Error(
                f"Unknown REALTIME setting(s): {', '.join(sorted(unknown))}.",
                hint=f"Known settings: {', '.join(sorted(DEFAULTS))}.",
                id="realtime.E001",
            )
        )
    authorizers = realtime_settings.authorizers
    for name in ("CONNECTION_AUTH_MODES", "DEFAULT_PUBLISH_AUTH_MODES", "DEFAULT_SUBSCRIBE_AUTH_MODES"):
        modes = getattr(realtime_settings, name.lower())
        if not modes:
            messages.append(
                Error(
                    f"REALTIME['{name}'] is empty.", hint="List at least one auth mode.", id="realtime.E002"
                )
            )
        for mode in modes:
            if mode not in authorizers:
                messages.append(
                    Error(
                        f"REALTIME['{name}'] names auth mode {mode!r}, which has no authorizer.",
                        hint="Add it to REALTIME['AUTHORIZERS'] or remove it.",
                        id="realtime.E003",
                    )
                )
    # Only the modes the settings use must load: OIDC, say, needs PyJWT only if used.
    used = {
        *realtime_settings.connection_auth_modes,
        *realtime_settings.default_publish_auth_modes,
        *realtime_settings.default_subscribe_auth_modes,
    }
    for mode, path in authorizers.items():
        if mode not in used:
            continue
        try:
            import_string(path)
        except (ImportError, ImproperlyConfigured) as error:
            messages.append(
                Error(
                    f"Authorizer {path!r} for {mode!r} cannot be imported: {error}",
                    hint="Install what it needs, or remove the mode from REALTIME.",
                    id="realtime.E004",
                )
            )
    if not 0 < realtime_settings.keepalive_interval <= 60:
        messages.append(
            Error(
                "REALTIME['KEEPALIVE_INTERVAL'] must be more than 0 and at most 60 seconds.",
                hint="Clients drop a connection that sends no 'ka' for 65 s (PROTOCOL §3.3).",
                id="realtime.E005",
            )
        )
    for name in (
        "MAX_SUBSCRIPTIONS_PER_CONNECTION",
        "MAX_EVENTS_PER_PUBLISH",
        "MAX_EVENT_SIZE",
        "OUTBOUND_BUFFER_SIZE",
    ):
        if getattr(realtime_settings, name.lower()) < 1:
            messages.append(Error(f"REALTIME['{name}'] must be at least 1.", id="realtime.E006"))
    for name in ("OCCUPANCY_INTERVAL", "OCCUPANCY_PROCESS_TTL", "MAX_CONNECTION_AGE"):
        value = getattr(realtime_settings, name.lower())
        if value is not None and value <= 0:
            messages.append(Error(f"REALTIME['{name}'] must be more than 0 seconds.", id="realtime.E020"))
    if realtime_settings.occupancy_process_ttl < 2 * realtime_settings.occupancy_interval:
        messages.append(
            Error(
                "REALTIME['OCCUPANCY_PROCESS_TTL'] must be at least twice REALTIME['OCCUPANCY_INTERVAL'].",
                hint="A live process refreshes its counts every interval; shorter, they would expire.",
                id="realtime.E021",
            )
        )
    if not 0 <= realtime_settings.inbound_event_lease <= 1:
        messages.append(
            Error(
                "REALTIME['INBOUND_EVENT_LEASE'] must be from 0 to 1 second.",
                hint="Each process may hold that much of the rate unspent; 0 counts every publish in Redis.",
                id="realtime.E027",
            )
        )
    idle_threads = realtime_settings._get("IDLE_REQUEST_THREADS")
    if isinstance(idle_threads, bool) or not isinstance(idle_threads, int) or idle_threads < 0:
        messages.append(
            Error(
                "REALTIME['IDLE_REQUEST_THREADS'] must be a whole number, 0 or more.",
                hint="Threads kept for HTTP requests' sync work; 0 ends each request's thread with it.",
                id="realtime.E028",
            )
        )
    rate_names = (
        "CONNECT_RATE",
        "CONNECT_RATE_PER_CLIENT",
        "AUTH_FAILURE_RATE",
        "PUBLISH_RATE_PER_CONNECTION",
        "SUBSCRIBE_RATE_PER_CONNECTION",
        "INBOUND_EVENT_RATE",
    )
    rates = {name: getattr(realtime_settings, name.lower()) for name in rate_names}
    messages += rate_errors("REALTIME", rates, check_id="realtime.E007")
    return messages


FRONT_DOOR_BOUNDS = ("MIN_IN_FLIGHT", "MAX_IN_FLIGHT", "MAX_LOOP_LAG", "MAX_QUEUE_DELAY")


@register(Tags.compatibility)
def check_front_door(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """``REALTIME["FRONT_DOOR"]``: positive bounds, proxies as CIDRs, a header only with proxies."""
    messages: list[CheckMessage] = []
    front_door = realtime_settings.front_door
    unknown = set(front_door) - set(DEFAULTS["FRONT_DOOR"])
    if unknown:
        messages.append(
            Error(
                f"Unknown REALTIME['FRONT_DOOR'] key(s): {', '.join(sorted(unknown))}.",
                hint=f"Known: {', '.join(sorted(DEFAULTS['FRONT_DOOR']))}.",
                id="realtime.E010",
            )
        )
    bounds = {f"['FRONT_DOOR']['{name}']": front_door[name] for name in FRONT_DOOR_BOUNDS}
    bounds["['LIMITS_REDIS_TIMEOUT']"] = realtime_settings._get("LIMITS_REDIS_TIMEOUT")
    for where, value in bounds.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            message = f"REALTIME{where} must be a number above 0, not {value!r}."
            messages.append(Error(message, id="realtime.E010"))
    share = front_door["MAX_DESCRIPTOR_SHARE"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 <= share <= 1:
        message = (
            f"REALTIME['FRONT_DOOR']['MAX_DESCRIPTOR_SHARE'] must be a number from 0 to 1, not {share!r}."
        )
        messages.append(Error(message, hint="0 turns the refusal off.", id="realtime.E010"))
    for cidr in front_door["TRUSTED_PROXIES"]:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            messages.append(
                Error(
                    f"REALTIME['FRONT_DOOR']['TRUSTED_PROXIES'] holds {cidr!r}: not an address or network.",
                    hint='For example "10.0.0.0/8" or "127.0.0.1".',
                    id="realtime.E010",
                )
            )
    if front_door["TRUSTED_PROXY_HEADER"] and not front_door["TRUSTED_PROXIES"]:
        messages.append(
            Warning(
                "REALTIME['FRONT_DOOR']['TRUSTED_PROXY_HEADER'] is set but no proxy is trusted: "
                "client addresses come from the peer, the header is ignored.",
                hint="List your reverse proxies' addresses in REALTIME['FRONT_DOOR']['TRUSTED_PROXIES'].",
                id="realtime.W004",
            )
        )
    return messages


def rate_errors(setting: str, rates: Mapping[str, str | None], *, check_id: str) -> list[CheckMessage]:
    """One error per rate that :func:`realtime.core.rates.parse_limit` refuses; ``None`` is no rate.

    Every app's rate settings are checked with this, so they share one grammar.
    """
    errors: list[CheckMessage] = []
    for name, rate in rates.items():
        if rate is None:
            continue
        try:
            parse_limit(rate)
        except ValueError as error:
            errors.append(
                Error(
                    f"{setting}['{name}']: {error}.",
                    hint='For example "2000/s", "100/m", "5/10s" or "2000/s burst 400".',
                    id=check_id,
                )
            )
    return errors


@register(Tags.compatibility)
def check_channel_layer(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    backend = layers.get("default", {}).get("BACKEND")
    if backend is None:
        return [
            Warning(
                "No default channel layer: realtime runs in one process only.",
                hint="Set CHANNEL_LAYERS (channels_redis) to run several server processes.",
                id="realtime.W001",
            )
        ]
    return []


# A deployment concern, like Django's own security.W0xx: `manage.py check --deploy`.
@register(Tags.security, deploy=True)
def check_metrics_token(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if settings.DEBUG or realtime_settings.metrics_token:
        return []
    return [
        Warning(
            "REALTIME['METRICS_TOKEN'] is not set: only signed-in staff users can read /metrics.",
            hint="Set it (e.g. from the METRICS_TOKEN environment variable) and give Prometheus "
            "'Authorization: Bearer <token>'.",
            id="realtime.W002",
        )
    ]


RELAY_MODES = ("inprocess", "external")


@register(Tags.compatibility)
def check_relay(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The relay's settings (realtime.operations.relay): a known mode; positive delays and batch."""
    messages: list[CheckMessage] = []
    mode = realtime_settings.relay
    if mode not in RELAY_MODES:
        messages.append(
            Error(
                f"REALTIME['RELAY'] is {mode!r}.",
                hint='"inprocess" (the server processes relay) or "external" (manage.py realtime_relay).',
                id="realtime.E008",
            )
        )
    for name, minimum in (("RELAY_POLL", 0.0), ("RELAY_BATCH", 0), ("RELAY_ADOPT_AFTER", 0.0)):
        try:
            value = float(getattr(realtime_settings, name.lower()))
        except (TypeError, ValueError):
            value = minimum
        if value <= minimum:
            message = f"REALTIME['{name}'] must be a number above {minimum:g}."
            messages.append(Error(message, id="realtime.E009"))
    if mode == "external":
        layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
        backend = layers.get("default", {}).get("BACKEND", "")
        if not backend or backend == "channels.layers.InMemoryChannelLayer":
            messages.append(
                Warning(
                    "REALTIME['RELAY'] is 'external' but the channel layer does not leave the process: "
                    "events written with publish_on_commit reach no subscriber.",
                    hint="Configure a channel layer every process shares (channels_redis), "
                    "or set REALTIME['RELAY'] to 'inprocess'.",
                    id="realtime.W003",
                )
            )
    return messages


@register(Tags.compatibility)
def check_history(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """The history's settings (realtime.delivery.history): a positive limit and window, a Redis URL."""
    messages: list[CheckMessage] = []
    for name in ("HISTORY_RECOVER_LIMIT", "HISTORY_RESUME_WINDOW"):
        try:
            value = float(getattr(realtime_settings, name.lower()))
        except (TypeError, ValueError):
            value = 0.0
        if value <= 0:
            messages.append(Error(f"REALTIME['{name}'] must be a number above 0.", id="realtime.E022"))
    url = realtime_settings.history_redis_url
    messages += _redis_url_errors("HISTORY_REDIS_URL", url, "None to keep history in each process", "E023")
    return messages


_REDIS_URL_FORMS = (
    "redis://host:port/db, rediss://…, unix:///path, or "
    "redis+sentinel://host:port,host:port/<master name>/db (docs/DEPLOYMENT.md, 'Redis Sentinel')"
)


def _redis_url_errors(name: str, url: str | None, otherwise: str, check_id: str) -> list[CheckMessage]:
    if url is None:
        return []
    try:
        parse_redis_url(url)
    except ValueError as error:
        return [
            Error(
                f"REALTIME['{name}']: {error}.",
                hint=f"{_REDIS_URL_FORMS}; or {otherwise}.",
                id=f"realtime.{check_id}",
            )
        ]
    return []


@register(Tags.compatibility)
def check_redis(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Every Redis the site names: the shared limits, the channel layer's hosts, the cache.

    Each is one server or a master behind Sentinel (:mod:`realtime.core.redis_urls`).
    """
    messages = _redis_url_errors(
        "LIMITS_REDIS_URL", realtime_settings.limits_redis_url, "None to count in each process", "E024"
    )
    layer = (getattr(settings, "CHANNEL_LAYERS", None) or {}).get("default", {})
    backend = str(layer.get("BACKEND", ""))
    if backend.startswith(("channels_redis.", "realtime.delivery.layers.")):
        hosts = (layer.get("CONFIG") or {}).get("hosts") or []
        if backend != REDIS_LAYER and any(
            isinstance(host, Mapping) and "master_name" in host for host in hosts
        ):
            messages.append(
                Warning(
                    f"CHANNEL_LAYERS['default'] reaches Redis through Sentinel with {backend}, whose "
                    "connections stay on a master after a manual failover demoted it: what they "
                    "write until Sentinel reconfigures it (seconds) is lost.",
                    hint=f"Use {REDIS_LAYER} (the same layer; its pools follow the master).",
                    id="realtime.W005",
                )
            )
        for host in hosts:
            problem = _layer_host_problem(host)
            if problem:
                messages.append(
                    Error(
                        f"CHANNEL_LAYERS['default']['CONFIG']['hosts']: {problem}.",
                        hint="Write each host as realtime.core.redis_urls.channel_layer_host(url) gives it.",
                        id="realtime.E025",
                    )
                )
    for alias, cache in (getattr(settings, "CACHES", None) or {}).items():
        problem = _cache_problem(cache)
        if problem:
            messages.append(
                Error(
                    f"CACHES[{alias!r}]: {problem}.",
                    hint='LOCATION as a list of URLs, and OPTIONS {"pool_class": '
                    '"realtime.store.redis.CacheConnectionPool"} for a Sentinel URL.',
                    id="realtime.E026",
                )
            )
    return messages


def _layer_host_problem(host: Any) -> str | None:
    if isinstance(host, str):
        try:
            target = parse_redis_url(host)
        except ValueError as error:
            return str(error)
        if isinstance(target, SentinelTarget):
            return (
                f"{_redacted(host)}: channels_redis does not read redis+sentinel:// URLs; "
                "it needs sentinels and master_name"
            )
        return None
    if isinstance(host, Mapping) and "sentinels" in host:
        sentinels = host["sentinels"]
        if not isinstance(sentinels, list | tuple) or not sentinels:
            return f"{_redacted(host)}: sentinels must be a non-empty list of (host, port)"
        for address in sentinels:
            if not (
                isinstance(address, list | tuple)
                and len(address) == 2
                and isinstance(address[0], str)
                and address[0]
                and isinstance(address[1], int)
                and 0 < address[1] < 65536
            ):
                return f"{_redacted(host)}: the Sentinel address {address!r} is not (host, port)"
        if not isinstance(host.get("master_name"), str) or not host["master_name"]:
            return f"{_redacted(host)}: a Sentinel host needs master_name, the name the Sentinels monitor"
    return None


def _cache_problem(cache: Mapping[str, Any]) -> str | None:
    if cache.get("BACKEND") != "django.core.cache.backends.redis.RedisCache":
        return None
    location = cache.get("LOCATION")
    if isinstance(location, str):
        if location.lower().startswith(SENTINEL_SCHEME) and re.search("[;,]", location):
            return "LOCATION is a string, which Django splits at commas: give a Sentinel URL in a list"
        urls = re.split("[;,]", location)  # as Django's RedisCache reads it
    else:
        urls = [str(url) for url in location or []]
    for url in urls:
        try:
            target = parse_redis_url(url)
        except ValueError as error:
            return str(error)
        if isinstance(target, SentinelTarget):
            pool = (cache.get("OPTIONS") or {}).get("pool_class")
            if pool not in (CACHE_POOL, CacheConnectionPool):
                return f"a redis+sentinel:// LOCATION needs the pool_class {CACHE_POOL}"
    return None


def _redacted(host: Any) -> str:
    """A host entry without its password, for a message that may be logged."""
    if isinstance(host, Mapping):
        return repr({key: "…" if "password" in key else value for key, value in host.items()})
    text = str(host)
    scheme, separator, rest = text.partition("://")
    if separator and "@" in rest.split("/", 1)[0]:
        return repr(f"{scheme}://…@{rest.split('@', 1)[1]}")
    return repr(text)
