"""HTTP routes of ``realtime``: include them at the site root, as AppSync's ``/event``."""

from django.urls import path

from .api.views import event
from .dashboard import dashboard
from .exposition import metrics_view
from .health import healthz, readyz
from .metrics import instrument_http
from .views import console

app_name = "realtime"

urlpatterns = [
    path("event", instrument_http(event), name="event"),
    path("realtime/console/", console, name="console"),
    path("realtime/dashboard/", dashboard, name="dashboard"),
    path("metrics", metrics_view, name="metrics"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
