"""WebSocket routes of ``realtime``: add them to the project's ``URLRouter``."""

from django.urls import path

from .consumers import RealtimeConsumer

websocket_urlpatterns = [
    path("event/realtime", RealtimeConsumer.as_asgi()),
]
