"""The ceiling: a bare ``websockets`` server speaking the benchmark's protocol subset.

``python -m bench.fanout.ceiling --port 8766``

No Django, no Channels, no ASGI, no authorization. The index maps a channel to
its subscription ids, and each id to the set of connections that use it; a
publish JSON-encodes each event once per id and hands one pre-encoded frame to
``websockets.broadcast()``. Subscribers in the benchmark all use the same
subscription id, so one publish is one ``broadcast()`` call. Nothing a Django
server does per frame can be cheaper than this, on the same interpreter. It
runs on uvloop when uvloop is installed (as uvicorn does), so it is the fastest
Python server on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import uuid
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

SUBPROTOCOL = "aws-appsync-event-ws"

# channel -> subscription id -> connections
index: dict[str, dict[str, set[ServerConnection]]] = {}


def _dumps(frame: dict[str, Any]) -> str:
    return json.dumps(frame, separators=(",", ":"))


async def handler(ws: ServerConnection) -> None:
    mine: dict[str, str] = {}  # subscription id -> channel
    try:
        async for text in ws:
            message = json.loads(text)
            kind = message.get("type")
            if kind == "connection_init":
                await ws.send(_dumps({"type": "connection_ack", "connectionTimeoutMs": 300000}))
            elif kind == "subscribe":
                sub_id, channel = message["id"], message["channel"]
                index.setdefault(channel, {}).setdefault(sub_id, set()).add(ws)
                mine[sub_id] = channel
                await ws.send(_dumps({"type": "subscribe_success", "id": sub_id}))
            elif kind == "unsubscribe":
                sub_id = message["id"]
                channel = mine.pop(sub_id, None)
                if channel is not None:
                    index.get(channel, {}).get(sub_id, set()).discard(ws)
                await ws.send(_dumps({"type": "unsubscribe_success", "id": sub_id}))
            elif kind == "publish":
                channel = message["channel"]
                subs = index.get(channel, {})
                successful = []
                for i, event in enumerate(message["events"]):
                    encoded = json.dumps(event)
                    for sub_id, conns in subs.items():
                        broadcast(conns, '{"type":"data","id":"' + sub_id + '","event":' + encoded + "}")
                    successful.append({"identifier": str(uuid.uuid4()), "index": i})
                await ws.send(
                    _dumps(
                        {
                            "type": "publish_success",
                            "id": message["id"],
                            "successful": successful,
                            "failed": [],
                        }
                    )
                )
    finally:
        for sub_id, channel in mine.items():
            index.get(channel, {}).get(sub_id, set()).discard(ws)


def select_subprotocol(connection: ServerConnection, subprotocols: Any) -> Any:
    return SUBPROTOCOL if SUBPROTOCOL in subprotocols else None


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        handler,
        host,
        port,
        select_subprotocol=select_subprotocol,
        compression=None,
        max_size=2**21,
        backlog=1024,
    ):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8766)
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")
    args = parser.parse_args()
    try:
        if args.no_uvloop:
            raise ImportError
        import uvloop

        uvloop.run(main(args.host, args.port))
    except ImportError:
        asyncio.run(main(args.host, args.port))
