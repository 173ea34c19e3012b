"""WebSocket routes of ``realtime``: add them to the project's ``URLRouter``."""

from django.urls import path

from realtime.transport.consumers import RealtimeConsumer

websocket_urlpatterns = [
    # URLRouter takes ASGI apps in path(); django-stubs types path() for views only.
    path("event/realtime", RealtimeConsumer.as_asgi()),  # type: ignore[arg-type]  # an ASGI app, see above
]
