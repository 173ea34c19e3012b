"""``GET /metrics``: the Prometheus text exposition of :mod:`realtime.ops.metrics`, protected.

Staff sessions may read it, and so may ``Authorization: Bearer <REALTIME["METRICS_TOKEN"]>``
(Prometheus); without a token it is open only while ``DEBUG`` is on (``realtime.W002``).
With ``PROMETHEUS_MULTIPROC_DIR`` set, every process's files are summed, whichever
process answers.
"""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from realtime.conf import realtime_settings
from realtime.ops.metrics import metrics, multiprocess_dir

try:
    import prometheus_client
    from prometheus_client import CollectorRegistry, multiprocess
except ImportError:  # pragma: no cover - a test hides the package instead
    prometheus_client = None  # type: ignore[assignment]  # optional extra: None means not installed


def render(registry: CollectorRegistry | None = None) -> tuple[bytes, str]:
    """The Prometheus text exposition and its content type.

    In multiprocess mode every process's files are aggregated; otherwise the
    registry the realtime metrics live in is rendered.
    """
    if prometheus_client is None:
        return b"# prometheus_client is not installed: no metrics.\n", "text/plain; charset=utf-8"
    if registry is None:
        if multiprocess_dir():
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        else:
            registry = metrics.registry
            # MetricSet binds a registry whenever prometheus_client is installed.
            assert registry is not None
    return prometheus_client.generate_latest(registry), prometheus_client.CONTENT_TYPE_LATEST


def metrics_view(request: HttpRequest) -> HttpResponse:
    """``GET /metrics``: staff users, or ``Authorization: Bearer <REALTIME["METRICS_TOKEN"]>``.

    Open to anyone only while ``DEBUG`` is on and no token is configured.
    """
    token = realtime_settings.metrics_token
    user = getattr(request, "user", None)
    allowed = bool(user is not None and user.is_active and user.is_staff)
    if not allowed and token:
        supplied = request.headers.get("authorization", "")
        scheme, _, credentials = supplied.partition(" ")
        allowed = scheme.lower() == "bearer" and hmac.compare_digest(
            credentials.strip().encode(), str(token).encode()
        )
        if not allowed:
            response = HttpResponse("Authentication required.\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    if not allowed and not (settings.DEBUG and not token):
        return HttpResponse("Forbidden.\n", status=403, content_type="text/plain")
    body, content_type = render()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
