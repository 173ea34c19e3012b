"""Which servers realtime.transport.server_tuning tunes, and uvicorn's handler check made once."""

from __future__ import annotations

import sys
import warnings
from types import SimpleNamespace
from typing import Any

import autobahn.twisted.websocket
import autobahn.websocket.protocol
import daphne.server
import pytest

from realtime.transport import server_tuning
from realtime.transport.slim_daphne import SlimWebSocketFactory

# uvicorn imports the library's deprecated legacy protocol before any of this runs.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from websockets.legacy import server as legacy_server

    from realtime.transport import slim_uvicorn


@pytest.fixture
def untouched(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """Whatever the test installs is put back afterwards."""
    monkeypatch.setattr(daphne.server, "WebSocketFactory", daphne.server.WebSocketFactory)
    monkeypatch.setattr(legacy_server, "remove_path_argument", legacy_server.remove_path_argument)
    for module in (autobahn.websocket.protocol, autobahn.twisted.websocket):
        monkeypatch.setattr(module, "hltype", module.hltype)
        monkeypatch.setattr(module, "hlval", module.hlval)
    return monkeypatch


def test_each_server_already_loaded_is_tuned(untouched: pytest.MonkeyPatch) -> None:
    untouched.setitem(sys.modules, server_tuning._UVICORN_WEBSOCKETS, SimpleNamespace())
    untouched.delitem(sys.modules, server_tuning._UVICORN_SANSIO, raising=False)
    assert server_tuning.tune_websocket_servers() == ["daphne", "uvicorn-websockets"]
    assert daphne.server.WebSocketFactory is SlimWebSocketFactory
    assert legacy_server.remove_path_argument is slim_uvicorn.remove_path_argument


def test_uvicorns_sansio_protocol_is_tuned_when_loaded(untouched: pytest.MonkeyPatch) -> None:
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from realtime.transport import slim_uvicorn_sansio

    for name in ("__init__", "send", "handle_connect", "pause_writing", "resume_writing"):
        untouched.setattr(WebSocketsSansIOProtocol, name, getattr(WebSocketsSansIOProtocol, name))
    untouched.setattr(WebSocketsSansIOProtocol, slim_uvicorn_sansio._TUNED, False, raising=False)
    untouched.delitem(sys.modules, server_tuning._DAPHNE)
    untouched.delitem(sys.modules, server_tuning._UVICORN_WEBSOCKETS, raising=False)
    assert server_tuning._UVICORN_SANSIO in sys.modules
    assert server_tuning.tune_websocket_servers() == ["uvicorn-websockets-sansio"]
    assert WebSocketsSansIOProtocol.__dict__[slim_uvicorn_sansio._TUNED] is True


def test_a_server_not_loaded_is_left_alone(untouched: pytest.MonkeyPatch) -> None:
    stock = daphne.server.WebSocketFactory
    untouched.delitem(sys.modules, server_tuning._DAPHNE)
    untouched.delitem(sys.modules, server_tuning._UVICORN_WEBSOCKETS, raising=False)
    untouched.delitem(sys.modules, server_tuning._UVICORN_SANSIO, raising=False)
    assert server_tuning.tune_websocket_servers() == []
    assert daphne.server.WebSocketFactory is stock


class Handlers:
    async def with_path(self, websocket: Any, path: str) -> str:
        return f"{websocket.name} at {path}"

    async def without_path(self, websocket: Any) -> str:
        return str(websocket.name)


async def test_uvicorns_handler_is_checked_once_per_function_and_still_gets_the_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    checked: list[Any] = []

    def library_check(handler: Any) -> Any:
        checked.append(handler)
        return legacy_server.remove_path_argument(handler)

    monkeypatch.setattr(slim_uvicorn, "_library_check", library_check)
    monkeypatch.setattr(slim_uvicorn, "_takes_path", {})
    websocket = SimpleNamespace(name="ws", path="/event/realtime", request_headers={"host": "x"})
    with pytest.warns(DeprecationWarning):
        first = slim_uvicorn.remove_path_argument(Handlers().with_path)
    second = slim_uvicorn.remove_path_argument(Handlers().with_path)
    assert await first(websocket) == await second(websocket) == "ws at /event/realtime"
    # The handshake is over when the handler runs: its headers are let go.
    assert websocket.request_headers is websocket.response_headers is slim_uvicorn.NO_HEADERS

    for handler in (Handlers().without_path, Handlers().without_path):
        assert slim_uvicorn.remove_path_argument(handler) is handler
    # One check per function, however many connections (bound methods) follow.
    assert len(checked) == 2
