"""Opt-in, server-specific tuning of the WebSocket path, for the servers we know.

A site turns it on from its ASGI module::

    from realtime.transport.server_tuning import tune_websocket_servers
    tune_websocket_servers()

- daphne: :mod:`realtime.transport.slim_daphne` (a lighter protocol per connection);
- uvicorn with its default ``websockets`` protocol: :mod:`realtime.transport.slim_uvicorn`
  (no signature inspection per connection);
- uvicorn with its ``websockets-sansio`` protocol (``realtime_serve``'s):
  :mod:`realtime.transport.slim_uvicorn_sansio` (less kept per connection, write backpressure).

Only a server that has already loaded its WebSocket module is tuned: the
``daphne`` and ``uvicorn`` command lines (and daphne's ``runserver``) load it
before they import the application, so importing the ASGI module is early
enough, and a process served by one server never imports the other. Any other
server is unaffected; HTTP requests are served as before.
"""

from __future__ import annotations

import sys

# The module each server has loaded by the time it imports the application.
_DAPHNE = "daphne.server"
_UVICORN_WEBSOCKETS = "uvicorn.protocols.websockets.websockets_impl"
_UVICORN_SANSIO = "uvicorn.protocols.websockets.websockets_sansio_impl"


def tune_websocket_servers() -> list[str]:
    """Install the tuning for each server this process runs; returns their names."""
    tuned = []
    if _DAPHNE in sys.modules:
        from realtime.transport import slim_daphne

        slim_daphne.install()
        tuned.append("daphne")
    if _UVICORN_WEBSOCKETS in sys.modules:
        from realtime.transport import slim_uvicorn

        slim_uvicorn.install()
        tuned.append("uvicorn-websockets")
    if _UVICORN_SANSIO in sys.modules:
        from realtime.transport import slim_uvicorn_sansio

        slim_uvicorn_sansio.install()
        tuned.append("uvicorn-websockets-sansio")
    return tuned
