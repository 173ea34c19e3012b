"""Transparent recovery across processes (PROTOCOL §12, "History"): a client that re-subscribes
with the same subscription id on *another* server process gets what it missed, because the
position its closed connection left and the streams both live in Redis.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from .conftest import DaphneFactory, RedisServer, enable_history
from .test_daphne import assert_silent, handshake, http_publish, open_socket, recv_frames, send

pytestmark = pytest.mark.e2e


async def test_a_resubscribe_on_another_process_gets_what_it_missed(
    redis_server: RedisServer, daphne_factory: DaphneFactory, e2e_env: dict[str, str], e2e_api_key: str
) -> None:
    enable_history(e2e_env, "chat", 500)
    a, b = daphne_factory("history-a", "history-b", REDIS_URL=redis_server.url)
    channel = f"/chat/{uuid.uuid4().hex[:10]}"
    sub_id = str(uuid.uuid4())

    async def subscribed(ws: Any) -> dict[str, Any]:
        await send(ws, {"type": "subscribe", "id": sub_id, "channel": channel})
        (reply,) = await recv_frames(ws, 1)
        return reply

    async def publish(value: Any) -> None:
        status, _, _ = await http_publish(b, channel, [json.dumps(value)])
        assert status == 200

    async with open_socket(a) as ws:
        await handshake(ws)
        first = await subscribed(ws)
        assert first == {"type": "subscribe_success", "id": sub_id, "offset": 0, "epoch": first["epoch"]}
        await publish({"seen": 1})
        assert await recv_frames(ws, 1) == [
            {"type": "data", "id": sub_id, "event": json.dumps({"seen": 1}), "offset": 1}
        ]
    # Closed: what follows is missed, and published through the other process.
    for n in range(3):
        await publish({"missed": n})

    async with open_socket(b) as ws:
        await handshake(ws)
        assert await subscribed(ws) == {
            "type": "subscribe_success",
            "id": sub_id,
            "offset": 4,
            "epoch": first["epoch"],
            "recovered": True,
        }
        assert await recv_frames(ws, 3) == [
            {"type": "data", "id": sub_id, "event": json.dumps({"missed": n}), "offset": n + 2}
            for n in range(3)
        ]
        await publish({"live": 1})
        assert await recv_frames(ws, 1) == [
            {"type": "data", "id": sub_id, "event": json.dumps({"live": 1}), "offset": 5}
        ]
        await assert_silent(ws)
