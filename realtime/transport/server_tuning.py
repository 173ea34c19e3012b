"""Opt-in, server-specific tuning of the WebSocket path, for the servers we know.

A site turns it on from its ASGI module, before the server starts (the ``daphne``
and ``uvicorn`` command lines import the application first)::

    from realtime.transport.server_tuning import tune_websocket_servers
    tune_websocket_servers()

- daphne: :mod:`realtime.transport.slim_daphne` (a lighter protocol per connection).

A server that is not installed is left alone; any other server is unaffected.
Only WebSocket connections are concerned: HTTP requests are served as before.
"""

from __future__ import annotations

import importlib.util


def tune_websocket_servers() -> list[str]:
    """Install the tuning for each installed server we know; returns their names."""
    tuned = []
    if importlib.util.find_spec("daphne") is not None:
        from realtime.transport import slim_daphne

        slim_daphne.install()
        tuned.append("daphne")
    return tuned
