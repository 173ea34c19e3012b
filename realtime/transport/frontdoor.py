"""The front door: admission before Django, for the routes a crowd hits.

:class:`FrontDoor` wraps the site's ASGI application. For a request that one of
its :class:`Gate`\\ s covers (a quiz join, ``POST /event``, a WebSocket connect
to ``/event/realtime``) it decides before anything else runs, in this order:

1. **overload**: while the process has as much work under way as its adaptive
   limit allows (:mod:`realtime.transport.overload`; for a WebSocket connect:
   while the event loop runs late), refuse at once, whatever the rates say: a
   refusal that arrives after seconds protects nothing;
2. **rates**: the gate's per-client and global limits, GCRA with a burst,
   counted in Redis when ``LIMITS_REDIS_URL`` is set (one round trip for both),
   in this process otherwise (:data:`realtime.auth.limits.rate_limiter`).

A refused HTTP request gets 429 and ``Retry-After`` (whole seconds) in the
shape of the API it was sent to, written straight to the server: no Django
request, no middleware, no view, no database. A refused WebSocket connect is
answered as ``realtime`` refuses one (PROTOCOL §12): the upgrade is accepted,
the client's first frame is answered with ``connection_error``
(``LimitExceededError``) and the socket closes with 1000.

An admitted request runs as if the front door were not there; its scope says
which gate let it in (``scope["realtime.admitted"]``), so the code behind does
not count it a second time. Every refusal is counted by operation and reason
(``realtime_limit_refused_total``).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from realtime.auth.limits import rate_limiter
from realtime.core import protocol
from realtime.core.protocol import CloseCode
from realtime.core.rates import Limit, parse_limit
from realtime.exceptions import LimitExceeded, RealtimeError, Transport
from realtime.ops.metrics import metrics
from realtime.transport.clients import client_address
from realtime.transport.handshake import SUBPROTOCOL, offered_subprotocols
from realtime.transport.overload import overload

# What the code behind reads to know the front door counted this request.
ADMITTED = "realtime.admitted"
# A connect refusal waits this long for the client's first frame (PROTOCOL §12).
REJECT_GRACE_SECONDS = 2.0

Scope = Mapping[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True)
class Refusal:
    """A 429 as bytes: the headers besides ``content-type`` and ``retry-after``, and the body."""

    body: bytes
    headers: Headers = field(default_factory=list)


@dataclass(frozen=True)
class Gate:
    """A route the front door guards, its limits, and how its API says "too many".

    Args:
        operation: the name refusals are counted under (``quiz.join``, ``event``, ``connect``).
        protocol: ``"http"`` or ``"websocket"``.
        path: a regular expression the whole path must match.
        methods: the HTTP methods guarded (others pass through: an ``OPTIONS`` preflight).
        client_rate: the per-client limit's text now (``"20/s burst 5"``), ``None`` for none.
        global_rate: the limit of the whole site (every process), ``None`` for none.
        refusal: the 429 of an HTTP gate (``retry_after`` → :class:`Refusal`); WebSocket gates need none.
    """

    operation: str
    protocol: str
    path: str
    methods: frozenset[str] = frozenset({"POST"})
    client_rate: Callable[[], str | None] = lambda: None
    global_rate: Callable[[], str | None] = lambda: None
    refusal: Callable[[int], Refusal] | None = None
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", re.compile(self.path))

    def covers(self, scope: Scope) -> bool:
        if scope["type"] != self.protocol:
            return False
        if self.protocol == "http" and scope.get("method") not in self.methods:
            return False
        return self._pattern.fullmatch(scope.get("path", "")) is not None

    def checks(self, client: str) -> list[tuple[str, Limit]]:
        """The keys and limits one request is counted against.

        A key names its limit too: a changed setting starts a fresh count, as a
        :class:`~realtime.core.rates.SettingLimiter` does.
        """
        checks: list[tuple[str, Limit]] = []
        client_rate, global_rate = self.client_rate(), self.global_rate()
        if client_rate:
            checks.append((f"{self.operation}:{client_rate}:client:{client}", parse_limit(client_rate)))
        if global_rate:
            checks.append((f"{self.operation}:{global_rate}:all", parse_limit(global_rate)))
        return checks


def json_refusal(body: object, headers: Iterable[tuple[str, str]] = ()) -> Refusal:
    """A :class:`Refusal` with a JSON body and extra headers."""
    return Refusal(
        json.dumps(body, separators=(",", ":")).encode(),
        [(name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers],
    )


class FrontDoor:
    """ASGI middleware: the gates' admission in front of ``app`` (see the module's docstring)."""

    def __init__(self, app: Callable[..., Any], gates: Sequence[Gate]) -> None:
        self.app = app
        self.gates = tuple(gates)

    def gate_for(self, scope: Scope) -> Gate | None:
        """The gate that covers this request, if any."""
        return next((gate for gate in self.gates if gate.covers(scope)), None) if self.gates else None

    def refusal_now(self, scope: Scope) -> tuple[Gate, int] | None:
        """The refusal of a request or connect that can be decided without waiting for anything.

        For a server that asks before it builds the application's request
        (:mod:`realtime.transport.daphne_door`): ``(gate, retry_after)`` when the
        process is overloaded (for a WebSocket connect: its loop runs late, as
        :meth:`__call__` decides) or a rate is spent in this process's counts,
        else ``None`` and the request goes on to :meth:`__call__`, which decides
        (and counts) as usual. It counts nothing against the rates, so it can
        only refuse what :meth:`__call__` would refuse too; the refusal is
        counted in ``realtime_limit_refused_total`` like any other.
        """
        gate = self.gate_for(scope)
        if gate is None:
            return None
        if not (overload.admits() if gate.protocol == "http" else overload.on_time()):
            metrics.refused(gate.operation, "overload")
            return gate, 1
        wait = rate_limiter.peek(gate.checks(client_address(scope)))
        if wait > 0:
            metrics.refused(gate.operation, "rate")
            return gate, max(1, math.ceil(wait))
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = self.gate_for(scope)
        if gate is None:
            await self.app(scope, receive, send)
            return
        overload.watch()
        retry_after = await self._refusal_delay(gate, scope)
        if retry_after is not None:
            if gate.protocol == "websocket":
                await _refuse_websocket(scope, receive, send)
            else:
                await _refuse_http(gate, retry_after, send)
            return
        admitted = {**scope, ADMITTED: gate.operation}
        if gate.protocol == "websocket":
            # A connection lives for hours: only its handshake is work in flight.
            await self.app(admitted, receive, send)
            return
        started = overload.started()
        try:
            await self.app(admitted, receive, send)
        finally:
            overload.finished(started)

    async def _refusal_delay(self, gate: Gate, scope: Scope) -> int | None:
        """``None`` to admit; else the whole seconds the client should wait (at least 1)."""
        # A connection's work is its handshake: it is held back only by a late loop.
        if not (overload.admits() if gate.protocol == "http" else overload.on_time()):
            metrics.refused(gate.operation, "overload")
            return 1
        wait = await rate_limiter.take(gate.checks(client_address(scope)))
        if wait > 0:
            metrics.refused(gate.operation, "rate")
            return max(1, math.ceil(wait))
        return None


def refusal_response(gate: Gate, retry_after: int) -> tuple[Headers, bytes]:
    """The 429 of an HTTP gate: its headers and body."""
    assert gate.refusal is not None, f"HTTP gate {gate.operation} has no refusal"
    return response_parts(gate.refusal(retry_after), retry_after)


def response_parts(refusal: Refusal, retry_after: int) -> tuple[Headers, bytes]:
    """A 429's headers (``content-type``, ``content-length``, ``retry-after``, the refusal's) and body."""
    headers: Headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(refusal.body)).encode()),
        (b"retry-after", str(retry_after).encode()),
        *refusal.headers,
    ]
    return headers, refusal.body


def http_refusal(
    gate: Gate, retry_after: int, leading: Iterable[tuple[bytes, bytes]] = ()
) -> tuple[bytes, int]:
    """The 429 of an HTTP gate as a whole HTTP/1.1 response (:func:`http_429`), and its body's size."""
    headers, body = refusal_response(gate, retry_after)
    return http_429(headers, body, leading), len(body)


def http_429(
    headers: Iterable[tuple[bytes, bytes]], body: bytes, leading: Iterable[tuple[bytes, bytes]] = ()
) -> bytes:
    """A whole HTTP/1.1 429, for a server that writes it without an ASGI cycle
    (:mod:`realtime.transport.daphne_door`, :mod:`realtime.transport.uvicorn_door`):
    ``leading`` are the server's own headers (``date``, ``server``), written first."""
    lines = [b"HTTP/1.1 429 Too Many Requests"]
    lines += [name + b": " + value for name, value in (*leading, *headers)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def _refuse_http(gate: Gate, retry_after: int, send: Send) -> None:
    headers, body = refusal_response(gate, retry_after)
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})


CONNECT_REFUSED: RealtimeError = LimitExceeded("Too many connections right now; retry with backoff.")


async def _refuse_websocket(scope: Scope, receive: Receive, send: Send) -> None:
    """Accept, answer the first frame with ``connection_error``, close with 1000 (PROTOCOL §12)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    offered = offered_subprotocols(scope.get("subprotocols", ()))
    await send({"type": "websocket.accept", "subprotocol": SUBPROTOCOL if SUBPROTOCOL in offered else None})
    try:
        async with asyncio.timeout(REJECT_GRACE_SECONDS):
            message = await receive()
    except TimeoutError:
        message = {"type": "websocket.receive"}
    if message["type"] == "websocket.disconnect":
        return
    error = protocol.connection_error([CONNECT_REFUSED.to_error(Transport.WEBSOCKET, with_code=True)])
    await send({"type": "websocket.send", "text": error})
    await send({"type": "websocket.close", "code": int(CloseCode.NORMAL)})
