"""A lighter WebSocket protocol for daphne: less kept per idle connection, less done per connect.

daphne's WebSocket protocol (autobahn's, underneath) keeps about 20 KB of Python
heap per idle connection, of which the application's own state is under 2 KB
(docs/BENCHMARKS.md, "Idle memory and connects"). Most of the rest is kept for
nothing once the socket is open:

- autobahn copies its factory's 29 options onto every protocol instance, and
  formats that list with ``pprint.pformat`` for a debug line on every connect
  whether or not the line is emitted. Here the options are class attributes of a
  protocol class made for the factory (:meth:`SlimWebSocketFactory.protocol_class`),
  so no instance holds a copy and the debug line has an empty list (written out
  without ``pprint``); the instance dict also stays one size class smaller.
- daphne gives every connection an ``asyncio.Queue`` for the application's
  ``receive``: four deques and an event, about 3 KB. :class:`Inbox` does what
  ``receive`` needs in one list.
- After the opening handshake, autobahn keeps the request's bytes, its parsed
  headers, the response it sent, and daphne the parsed request; the scope
  already holds what the application may still ask for. They are let go in
  :meth:`SlimWebSocketProtocol.onOpen`.
- autobahn's queue for chopped and synchronous writes, which daphne never makes,
  is created only if one is made.
- autobahn builds the arguments of its debug lines whether or not the line is
  emitted: the names of its own methods and values coloured with ``click.style``,
  six times per connect and once per frame received (about 6 % of a connect
  storm's CPU under cProfile). :func:`install` has them formatted only if a line is
  (:class:`LogText`).

Opt-in: :func:`install` (called from the site's ``config/asgi.py``) makes daphne's
server build its WebSocket factory from :class:`SlimWebSocketFactory`. It has to
run before the server starts, which importing the ASGI application does under
the ``daphne`` command line, ``runserver`` and the test servers. Everything else
(the HTTP path, TLS, timeouts, ping, the close handshake) stays daphne's and
autobahn's; the frames written are the same bytes.
"""

from __future__ import annotations

import asyncio
import functools
import pprint
import types
from collections import deque
from typing import Any

import autobahn.twisted.websocket as _autobahn_twisted
import autobahn.websocket.protocol as _autobahn_protocol
from autobahn import util as _autobahn_util
from autobahn.websocket.protocol import WebSocketServerProtocol as _AutobahnServerProtocol
from daphne import server as daphne_server  # type: ignore[import-untyped]  # no type information
from daphne.ws_protocol import WebSocketFactory, WebSocketProtocol  # type: ignore[import-untyped]

from realtime.transport.light_sync import Inbox

__all__ = ["NOTHING_QUEUED", "Inbox", "SlimWebSocketFactory", "install"]

# Stands for autobahn's send queue until a chopped or synchronous write needs one:
# empty and immutable, so autobahn's `len(...)` checks and our writer's truth test read it as empty.
NOTHING_QUEUED: tuple[()] = ()


class _Opened:
    """What daphne still reads of the upgrade request once the socket is open: its path (logs)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


class ServerView:
    """daphne's server as its WebSocket protocols see it: the same server, but each
    connection's application gets an :class:`Inbox` instead of an ``asyncio.Queue``."""

    # Read by every protocol every couple of seconds (daphne's timeout checks): copied once.
    _SETTINGS = ("websocket_timeout", "websocket_connect_timeout", "ping_interval", "root_path")

    def __init__(self, server: Any) -> None:
        self._server = server
        for name in self._SETTINGS:
            setattr(self, name, getattr(server, name))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Inbox | None:
        # daphne's Server.create_application with the lighter inbox; `send` is the same
        # partial of the server's handle_reply (realtime.delivery.direct finds the protocol there).
        server = self._server
        connections = server.connections
        assert "application_instance" not in connections[protocol]
        inbox = Inbox()
        scope.setdefault("asgi", {"version": "3.0"})
        instance = server.application(
            scope=scope, receive=inbox.get, send=functools.partial(server.handle_reply, protocol)
        )
        if protocol not in connections:
            return None
        connections[protocol]["application_instance"] = asyncio.ensure_future(
            instance, loop=asyncio.get_event_loop()
        )
        return inbox


class SlimWebSocketProtocol(WebSocketProtocol):  # type: ignore[misc]
    """daphne's WebSocket protocol, keeping less per connection (module docstring)."""

    # The options are class attributes of the factory's subclass: nothing to copy.
    CONFIG_ATTRS: list[str] = []

    send_queue: deque[tuple[bytes, bool]] | tuple[()]
    request: Any

    def _connectionMade(self) -> None:
        super()._connectionMade()
        self.send_queue = NOTHING_QUEUED

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if (sync or chopsize) and self.send_queue is NOTHING_QUEUED:
            self.send_queue = deque()
        super().sendData(data, sync, chopsize)

    def onOpen(self) -> None:
        super().onOpen()
        # The handshake is over: what it parsed lives on in the scope.
        self.request = _Opened(self.request.path)
        self.http_headers = self.http_request_data = self.http_response_data = None
        self.http_status_line = self.http_request_uri = self.http_request_params = None
        self.websocket_protocols = self.websocket_extensions = None
        # Read by autobahn only up to here (the TLS channel id, in _onOpen).
        self._transport_details = None


class SlimWebSocketFactory(WebSocketFactory):  # type: ignore[misc]
    """daphne's WebSocket factory, building :class:`SlimWebSocketProtocol` s that read its
    options from their class."""

    def __init__(self, server_class: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(ServerView(server_class), *args, **kwargs)

    def resetProtocolOptions(self) -> None:
        super().resetProtocolOptions()
        self.protocol = self.protocol_class()

    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:
        super().setProtocolOptions(*args, **kwargs)
        self.protocol = self.protocol_class()

    def protocol_class(self) -> type[SlimWebSocketProtocol]:
        """A subclass holding this factory's current options as class attributes."""
        options = {}
        for name in _AutobahnServerProtocol.CONFIG_ATTRS:
            value = getattr(self, name)
            # A function stored on a class would become a method of each instance.
            options[name] = staticmethod(value) if isinstance(value, types.FunctionType) else value
        return type("SlimWebSocketProtocol", (SlimWebSocketProtocol,), options)


class LogText:
    """An argument of one of autobahn's debug lines, formatted only if the line is emitted."""

    __slots__ = ("_format", "_value")

    def __init__(self, format_: Any, value: Any) -> None:
        self._format = format_
        self._value = value

    def __str__(self) -> str:
        return str(self._format(self._value))

    def __format__(self, spec: str) -> str:
        return format(str(self), spec)

    __repr__ = __str__


def _lazy_hltype(obj: Any) -> LogText:
    return LogText(_autobahn_util.hltype, obj)


def _lazy_hlval(value: Any, **style: Any) -> LogText:
    if style:
        return LogText(functools.partial(_autobahn_util.hlval, **style), value)
    return LogText(_autobahn_util.hlval, value)


def _pformat(obj: Any, *args: Any, **kwargs: Any) -> str:
    # autobahn formats its copied options for a debug line on every connect; a slim
    # protocol copies none, and pprint's machinery for "[]" is ~1 % of a connect storm.
    if type(obj) is list and not obj:
        return "[]"
    return pprint.pformat(obj, *args, **kwargs)


def install() -> None:
    """Make daphne's server (started after this call) use :class:`SlimWebSocketFactory`, and
    autobahn's debug lines format their arguments only when emitted."""
    daphne_server.WebSocketFactory = SlimWebSocketFactory
    # Both modules call these only for the arguments of log lines.
    for module in (_autobahn_protocol, _autobahn_twisted):
        module.hltype = _lazy_hltype  # type: ignore[attr-defined]
        module.hlval = _lazy_hlval  # type: ignore[attr-defined]
    _autobahn_protocol.pformat = _pformat  # type: ignore[assignment,attr-defined]  # same output
