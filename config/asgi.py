"""ASGI entry point: the front door, then HTTP through Django and WebSockets through ``realtime``'s routes."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")

# Django must be set up before the consumers (and the models they use) import.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from quiz.admission import JOIN_GATE  # noqa: E402
from realtime.routing import websocket_urlpatterns  # noqa: E402
from realtime.transport.daphne_door import shed_in_daphne  # noqa: E402
from realtime.transport.frontdoor import FrontDoor  # noqa: E402
from realtime.transport.gates import connect_gate, event_gate  # noqa: E402
from realtime.transport.request_threads import RequestThreads  # noqa: E402
from realtime.transport.server_tuning import tune_websocket_servers  # noqa: E402
from realtime.transport.uvicorn_door import shed_in_uvicorn  # noqa: E402

# Lighter WebSocket connections under daphne and uvicorn (SERVER_TUNING=0 turns it off):
# they must be in place before the server starts, which this import precedes.
if settings.SERVER_TUNING:
    tune_websocket_servers()

# Joins, POST /event and WebSocket connects are admitted (or refused with 429)
# before Django builds a request for them (realtime.transport.frontdoor). Each
# HTTP request's sync work runs in a thread it leases, not one started for it
# (realtime.transport.request_threads).
application = FrontDoor(
    ProtocolTypeRouter(
        {
            "http": RequestThreads(django_asgi_app),
            "websocket": URLRouter(websocket_urlpatterns),
        }
    ),
    gates=[JOIN_GATE, event_gate(), connect_gate()],
)
# Under daphne, what the front door can refuse at once is refused by Twisted
# itself, before daphne builds an application instance for it: refusals cost a
# fraction as much, so overload does not queue them (realtime.transport.daphne_door).
# Under uvicorn, by its HTTP protocol before a request cycle exists (.uvicorn_door).
shed_in_daphne(application)
shed_in_uvicorn(application)

# Everything loaded so far lives as long as the process: keep it out of the
# collector's way, and collect young objects less often. Full collections over
# the per-connection objects of a thousand sockets froze the loop for 130-170 ms
# every couple of seconds (docs/BENCHMARKS.md).
gc.collect()
gc.freeze()
gc.set_threshold(50_000, 20, 100)
