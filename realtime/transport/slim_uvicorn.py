"""uvicorn's ``websockets`` WebSocket protocol (its default): one per-connection cost removed.

uvicorn hands the ``websockets`` library a handler that still takes the request
path as a second argument. For every connection, the library's legacy protocol
checks that handler's signature with ``inspect.signature`` (twice) and warns
that the second argument is deprecated: 6.7 % of a connect storm's samples
(docs/BENCHMARKS.md). The answer is the same for every connection of a protocol
class, so :func:`install` has the check made once per handler function and wraps
the handler the way the library does. That wrapper runs once the opening
handshake is over, and lets go of the handshake's request and response headers
(about 2.5 KB per connection), which nothing reads again: uvicorn made the
scope's own copy during the handshake.

Opt-in through :func:`realtime.transport.server_tuning.tune_websocket_servers`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from websockets.datastructures import Headers
from websockets.legacy import server as legacy_server

Handler = Callable[..., Awaitable[Any]]

_library_check: Callable[[Handler], Handler] = legacy_server.remove_path_argument
# Whether a handler function takes the path, by function (uvicorn's is a bound method).
_takes_path: dict[Any, bool] = {}
# What an open connection's handshake headers read as once let go (never written to again).
NO_HEADERS = Headers()


def remove_path_argument(ws_handler: Handler) -> Handler:
    """The library's ``remove_path_argument``, deciding once per handler function."""
    function = getattr(ws_handler, "__func__", None)
    if function is None:
        return _library_check(ws_handler)
    takes_path = _takes_path.get(function)
    if takes_path is None:
        takes_path = _takes_path[function] = _library_check(ws_handler) is not ws_handler
    if not takes_path:
        return ws_handler

    async def handler_with_path(websocket: Any) -> Any:
        # Called by the library once the opening handshake is over.
        websocket.request_headers = websocket.response_headers = NO_HEADERS
        return await ws_handler(websocket, websocket.path)

    return handler_with_path


def install() -> None:
    """Have the ``websockets`` legacy server protocol use :func:`remove_path_argument`."""
    legacy_server.remove_path_argument = remove_path_argument
