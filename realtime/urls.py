"""HTTP routes of ``realtime``: include them at the site root, as AppSync's ``/event``."""

from django.urls import path

from realtime.ops.dashboard import dashboard
from realtime.ops.exposition import metrics_view
from realtime.ops.health import healthz, readyz
from realtime.ops.metrics import instrument_http
from realtime.transport.console import console
from realtime.transport.history_http import event_history
from realtime.transport.http import event
from realtime.transport.presence import presence

app_name = "realtime"

urlpatterns = [
    path("event", instrument_http(event), name="event"),
    path("event/presence", instrument_http(presence), name="presence"),
    path("event/history", instrument_http(event_history), name="event-history"),
    path("realtime/console/", console, name="console"),
    path("realtime/dashboard/", dashboard, name="dashboard"),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
