"""uvicorn's ``websockets`` WebSocket protocol (its default): one per-connection cost removed.

uvicorn hands the ``websockets`` library a handler that still takes the request
path as a second argument. For every connection, the library's legacy protocol
checks that handler's signature with ``inspect.signature`` (twice) and warns
that the second argument is deprecated: 6.7 % of a connect storm's samples
(docs/BENCHMARKS.md). The answer is the same for every connection of a protocol
class, so :func:`install` has the check made once per handler function and wraps
the handler the way the library does.

Opt-in through :func:`realtime.transport.server_tuning.tune_websocket_servers`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from websockets.legacy import server as legacy_server

Handler = Callable[..., Awaitable[Any]]

_library_check: Callable[[Handler], Handler] = legacy_server.remove_path_argument
# Whether a handler function takes the path, by function (uvicorn's is a bound method).
_takes_path: dict[Any, bool] = {}


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
        return await ws_handler(websocket, websocket.path)

    return handler_with_path


def install() -> None:
    """Have the ``websockets`` legacy server protocol use :func:`remove_path_argument`."""
    legacy_server.remove_path_argument = remove_path_argument
