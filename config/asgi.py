"""ASGI entry point: HTTP through Django, WebSockets through ``realtime``'s routes."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

# Django must be set up before the consumers (and the models they use) import.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from realtime.routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": URLRouter(websocket_urlpatterns),
    }
)

# Everything loaded so far lives as long as the process: keep it out of the
# collector's way, and collect young objects less often. Full collections over
# the per-connection objects of a thousand sockets froze the loop for 130-170 ms
# every couple of seconds (docs/BENCHMARKS.md).
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 100)
