"""HTTP routes of ``realtime``: include them at the site root, as AppSync's ``/event``."""

from django.urls import path

from .api.views import EventView
from .health import healthz, readyz
from .views import console

app_name = "realtime"

urlpatterns = [
    path("event", EventView.as_view(), name="event"),
    path("realtime/console/", console, name="console"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
]
