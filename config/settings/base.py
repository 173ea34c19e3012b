"""Site settings, from the environment (12-factor), with an embedded default.

With nothing set, the site runs on SQLite, the in-memory channel layer and the
local-memory cache: ``python manage.py runserver`` works on a fresh machine.

- ``DATABASE_URL``: e.g. ``postgres://user@127.0.0.1:5432/realtime``.
- ``REDIS_URL``: e.g. ``redis://127.0.0.1:6379/0``; switches the channel layer,
  the cache, the shared rate limits and the history to Redis, for several server
  processes. A master behind Redis Sentinel:
  ``redis+sentinel://host:26379,host:26380,host:26381/<master name>/0``
  (``realtime.core.redis_urls``; docs/DEPLOYMENT.md, "Redis Sentinel").
- ``SECRET_KEY``, ``DEBUG``, ``ALLOWED_HOSTS`` (comma-separated),
  ``CSRF_TRUSTED_ORIGINS`` (comma-separated).
- ``METRICS_TOKEN``: the bearer token Prometheus sends to ``/metrics``.
- ``STATIC_ROOT``: where ``collectstatic`` puts the static files (default ``staticfiles/``).
- ``LOG_FORMAT``: ``plain`` (default) or ``json``; ``LOG_LEVEL``.
- ``TRUSTED_PROXIES``: the reverse proxies' addresses or networks (comma-separated
  CIDRs, e.g. ``127.0.0.1``): the client's address is then read from their
  ``X-Forwarded-For`` (and only from theirs).
- ``QUIZ_WORKER``, ``REALTIME_RELAY``: ``inprocess`` or ``external``; by default
  ``external`` with ``REDIS_URL`` (run ``quiz_worker`` and ``realtime_relay``).
- ``REALTIME_DIRECT_WRITES``: ``0`` sends every WebSocket frame through the
  server's ASGI ``send`` even under daphne and uvicorn (default ``1``).
- ``SERVER_TUNING``: ``0`` serves WebSockets with daphne's and uvicorn's own
  protocol classes instead of the lighter ones of ``realtime.transport.server_tuning``
  (default ``1``).
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from realtime.core.redis_urls import channel_layer_host

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if not value:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
# The embedded default is for a developer's machine; production sets its own.
SECRET_KEY = os.environ.get("SECRET_KEY", "insecure-development-key-set-SECRET_KEY-in-production")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    # Generates the OpenAPI document (/api/schema/); its deploy check reports what it cannot describe.
    "drf_spectacular",
    "realtime",
    "quiz",
]

# Django's middleware and WhiteNoise's, async-native (config/middleware.py): each
# of them hopped to a thread per request under daphne.
MIDDLEWARE = [
    "config.middleware.SecurityMiddleware",
    # X-Request-ID in and out, and on every log line of the request.
    "realtime.ops.middleware.RequestIdMiddleware",
    # Static files from the app server itself (daphne has no static handler).
    "config.middleware.WhiteNoiseMiddleware",
    "config.middleware.SessionMiddleware",
    "config.middleware.CommonMiddleware",
    "config.middleware.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "config.middleware.MessageMiddleware",
    "config.middleware.XFrameOptionsMiddleware",
]

# Django's deploy checks look for its own middleware paths by name; config.middleware
# subclasses them (same behaviour, hooks kept on the event loop), so the three
# "not in MIDDLEWARE" warnings do not apply.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]

ROOT_URLCONF = "config.urls"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}",
        conn_max_age=int(os.environ.get("DB_CONN_MAX_AGE", "0")),
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL lets readers proceed while one thread writes; IMMEDIATE transactions
    # take the write lock up front, so a read-then-write transaction (the
    # scoring worker's) waits its turn instead of failing with "database is
    # locked"; synchronous=NORMAL is WAL's usual setting (a commit survives a
    # crash of the process; only a power cut can take the last ones).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )

REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "realtime.delivery.layers.RedisChannelLayer",
            "CONFIG": {
                # A redis+sentinel:// URL becomes channels_redis's sentinels/master_name entry.
                "hosts": [channel_layer_host(REDIS_URL)],
                # The hub reads one layer channel per process for all its
                # subscribers: a burst must not overflow it.
                "capacity": 10_000,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            # A list: Django splits a string at commas, which separate a Sentinel URL's Sentinels.
            "LOCATION": [REDIS_URL],
            # Reads redis+sentinel:// URLs too (follows the master through a failover).
            "OPTIONS": {"pool_class": "realtime.store.redis.CacheConnectionPool"},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT") or BASE_DIR / "staticfiles")
# In development WhiteNoise serves straight from the apps' static folders;
# in production run `collectstatic` (it then serves STATIC_ROOT).
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGIN_URL = "admin:login"

# The OpenAPI document at /api/schema/ (docs/HTTP.md). The endpoints are plain
# async views; realtime.transport.schema describes each from the operations beside it.
SPECTACULAR_SETTINGS: dict[str, object] = {
    "TITLE": "Realtime events and the quiz",
    "DESCRIPTION": (
        "`POST /event` is AppSync Events' HTTP publish (docs/PROTOCOL.md §2); "
        "`/api/quiz/...` is the game show's API."
    ),
    "VERSION": "0.1.0",
    "OAS_VERSION": "3.1.0",
    "DEFAULT_GENERATOR_CLASS": "realtime.transport.schema.SchemaGenerator",
    "SERVE_INCLUDE_SCHEMA": False,
}
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}

TRUSTED_PROXIES = env_list("TRUSTED_PROXIES", [])
REALTIME: dict[str, object] = {
    # API keys for scripts and the console, the session for staff pages, and
    # player tokens (quiz.auth, the CUSTOM mode) for the game's players.
    "CONNECTION_AUTH_MODES": ["API_KEY", "USER", "CUSTOM"],
    "CUSTOM_AUTHORIZER": {"HANDLER": "quiz.auth.player_authorizer"},
    "METRICS_TOKEN": os.environ.get("METRICS_TOKEN") or None,
    # With Redis the site runs several processes and `manage.py realtime_relay`
    # publishes what publish_on_commit wrote; alone, the server does.
    "RELAY": os.environ.get("REALTIME_RELAY", "external" if REDIS_URL else "inprocess"),
    # Occupancy and presence channels (PROTOCOL §12); REALTIME_OCCUPANCY=off turns them off.
    "OCCUPANCY": os.environ.get("REALTIME_OCCUPANCY", "on") != "off",
    # Every process counts the join, connect and publish rates in one place.
    "LIMITS_REDIS_URL": REDIS_URL or None,
    # Channel history lives where every process sees it.
    "HISTORY_REDIS_URL": REDIS_URL or None,
    # "0": every frame through the server's ASGI send, even under daphne and uvicorn.
    "DIRECT_WRITES": env_bool("REALTIME_DIRECT_WRITES", True),
    # Behind a reverse proxy (deploy/nginx): the client's address comes from
    # X-Forwarded-For, believed only from a peer in TRUSTED_PROXIES (CIDRs).
    **(
        {"FRONT_DOOR": {"TRUSTED_PROXY_HEADER": "X-Forwarded-For", "TRUSTED_PROXIES": TRUSTED_PROXIES}}
        if TRUSTED_PROXIES
        else {}
    ),
}

# config/asgi.py installs realtime.transport.server_tuning when this is on.
SERVER_TUNING = env_bool("SERVER_TUNING", True)

QUIZ: dict[str, object] = {
    # Join admission control (DESIGN §8); the environment may tune it per deployment.
    **({"JOIN_RATE": os.environ["QUIZ_JOIN_RATE"]} if os.environ.get("QUIZ_JOIN_RATE") else {}),
    **(
        {"JOIN_RATE_PER_CLIENT": os.environ["QUIZ_JOIN_RATE_PER_CLIENT"]}
        if os.environ.get("QUIZ_JOIN_RATE_PER_CLIENT")
        else {}
    ),
    # With Redis the site runs several processes and `manage.py quiz_worker` scores.
    "WORKER": os.environ.get("QUIZ_WORKER", "external" if os.environ.get("REDIS_URL") else "inprocess"),
}

# LOG_FORMAT=json: one JSON object per line with connection_id / request_id.
# Both formats mask API keys, tokens and credentials (realtime.ops.logs).
LOG_FORMAT = os.environ.get("LOG_FORMAT", "plain")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "realtime.ops.logs.ContextFilter"},
        "redact": {"()": "realtime.ops.logs.RedactFilter"},
    },
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "realtime.ops.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
            "filters": ["context", "redact"],
        }
    },
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
