"""The front door inside uvicorn: refusals answered before an ASGI cycle exists (opt-in).

Under uvicorn, :class:`~realtime.transport.frontdoor.FrontDoor` refuses once uvicorn
has read a request's headers, built its scope, a request-response cycle and a
task for the application, and each ``send`` of the 429 has gone through that
cycle. Past a few times what the process can admit, those refusals alone fill
the event loop: in one 10× storm of five (docs/BENCHMARKS.md, "Crowd-proof
entry") uvicorn fell seconds behind, 16,869 requests timed out and 13,130
players were stored whose client never heard its 201.

:func:`shed_in_uvicorn` has uvicorn's ``httptools`` protocol (``uvicorn[standard]``'s,
the one ``realtime_serve --server uvicorn`` and ``uvicorn`` run by default) ask
the front door as soon as a request's headers are parsed: when
:meth:`FrontDoor.refusal_now <realtime.transport.frontdoor.FrontDoor.refusal_now>`
refuses it (the process is overloaded, or a rate is spent in this process's
counts), the same 429 (same headers and body, uvicorn's own ``date`` and
``server``) is written at once and the connection stays open for the next
request; the request's body, if any, is read and dropped. No cycle, no task,
no application call. Every other request goes on exactly as before, through
the front door's ASGI layer, which still decides (and counts) the rates.

Left to uvicorn: WebSocket upgrades (the ASGI front door refuses connects in
AppSync's shape), a request pipelined behind another, HTTP/1.0 and
``Connection: close`` (uvicorn closes after those), and uvicorn's ``h11``
protocol.

It is opt-in: the site calls it in its ASGI module, after building the front
door (``config/asgi.py``), like :func:`~realtime.transport.daphne_door.shed_in_daphne`.
uvicorn has resolved its protocol class by then, so the class is changed in
place (once; the last door given wins); under any other server it does nothing.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any
from urllib.parse import unquote

from realtime.transport.frontdoor import FrontDoor, http_refusal

_HTTPTOOLS = "uvicorn.protocols.http.httptools_impl"
# Set on the protocol class once it sheds.
_SHEDDING = "_realtime_shedding"
# The door the protocol asks (the last one given).
_doors: list[FrontDoor] = []


def shed_in_uvicorn(door: FrontDoor) -> bool:
    """Have uvicorn's ``httptools`` requests meet ``door``'s :meth:`~FrontDoor.refusal_now` first.

    Returns whether uvicorn's ``httptools`` protocol is loaded (and so now sheds).
    """
    module = sys.modules.get(_HTTPTOOLS)
    if module is None:
        return False
    _doors[:] = [door]
    protocol: Any = module.HttpToolsProtocol
    if protocol.__dict__.get(_SHEDDING):
        return True
    library_on_headers_complete = protocol.on_headers_complete

    def on_headers_complete(self: Any) -> None:
        if not _refused(self, _doors[0]):
            library_on_headers_complete(self)

    protocol.on_headers_complete = on_headers_complete
    setattr(protocol, _SHEDDING, True)
    return True


class _Answered:
    """The cycle of a request answered by :func:`_refused`: its response is complete.

    uvicorn's protocol reads these attributes of its current cycle: a complete
    response makes it drop the request's body and keep the connection for the next.
    """

    response_complete = True
    disconnected = False

    def __init__(self) -> None:
        self.message_event = asyncio.Event()


def _refused(protocol: Any, door: FrontDoor) -> bool:
    """Answer the request whose headers ``protocol`` just parsed, if the door refuses it now.

    Returns whether it did.
    """
    parser = protocol.parser
    cycle = protocol.cycle
    if (cycle is not None and not cycle.response_complete) or parser.should_upgrade():
        return False  # pipelined behind a request under way, or an upgrade: uvicorn's
    if parser.get_http_version() != "1.1" or not parser.should_keep_alive():
        return False  # uvicorn closes the connection after its answer
    method = parser.get_method().decode("ascii", "replace")
    target = protocol.url.partition(b"?")[0].partition(b"#")[0]
    try:
        # As uvicorn's scope has it (a target in absolute form matches no gate: uvicorn's).
        path = protocol.root_path + unquote(target.decode("ascii"))
    except UnicodeDecodeError:
        return False
    client = protocol.client
    refusal = door.refusal_now(
        {"type": "http", "method": method, "path": path, "client": client, "headers": protocol.headers}
    )
    if refusal is None:
        return False
    gate, retry_after = refusal
    answer, _ = http_refusal(gate, retry_after, protocol.server_state.default_headers)
    protocol.cycle = _Answered()
    protocol.transport.write(answer)
    if protocol.access_log:
        # uvicorn's own access line for the answer it would have sent.
        protocol.access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            f"{client[0]}:{client[1]}" if client else "",
            method,
            protocol.url.decode("ascii", "replace"),
            "1.1",
            429,
        )
    protocol.on_response_complete()
    return True
