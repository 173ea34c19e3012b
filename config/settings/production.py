"""Production settings: ``DJANGO_SETTINGS_MODULE=config.settings.production``.

Everything in ``base`` still comes from the environment; here the safe choices
are forced and the secrets are required (docs/DEPLOYMENT.md lists every
variable). The site runs behind a TLS-terminating proxy (nginx) that sets
``X-Forwarded-Proto``.

Required: ``SECRET_KEY``, ``ALLOWED_HOSTS``. Expected: ``DATABASE_URL``,
``REDIS_URL``, ``METRICS_TOKEN``, ``CSRF_TRUSTED_ORIGINS``.
"""

from __future__ import annotations

import copy
import os

from django.core.exceptions import ImproperlyConfigured

from .base import *  # noqa: F403
from .base import LOGGING, REALTIME, env_bool, env_list


def _required(name: str) -> str:
    value = os.environ.get(name, "").strip()
    if not value:
        raise ImproperlyConfigured(f"Set the {name} environment variable (docs/DEPLOYMENT.md).")
    return value


DEBUG = False
SECRET_KEY = _required("SECRET_KEY")
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", [])
if not ALLOWED_HOSTS:
    raise ImproperlyConfigured("Set ALLOWED_HOSTS (comma-separated host names) (docs/DEPLOYMENT.md).")

# TLS ends at the proxy, which says so in X-Forwarded-Proto: nginx must set it
# itself (never pass a client's), or anyone could claim https.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
# The load balancer's health checks come over plain HTTP from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]
SECURE_HSTS_SECONDS = int(os.environ.get("SECURE_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_SECURE = True
X_FRAME_OPTIONS = "DENY"

# Static files: `manage.py collectstatic` into STATIC_ROOT (env, see base), served
# by WhiteNoise (or by nginx straight from that directory).
WHITENOISE_USE_FINDERS = False
WHITENOISE_AUTOREFRESH = False
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    # Hashed, compressed file names: cache them forever.
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

REALTIME = {**REALTIME, "METRICS_TOKEN": os.environ.get("METRICS_TOKEN") or None}

# One JSON object per line unless LOG_FORMAT says otherwise.
LOGGING = copy.deepcopy(LOGGING)
LOGGING["handlers"]["console"]["formatter"] = "plain" if os.environ.get("LOG_FORMAT") == "plain" else "json"
