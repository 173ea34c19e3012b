"""Redis behind Sentinel: the master fails over under traffic, and the site carries on on the new one.

A master, two replicas and three Sentinels (``tests/e2e/sentinel.py``, private ports, no
persistence) and two daphne processes configured with nothing but
``REDIS_URL=redis+sentinel://…`` (channel layer, cache, shared limits, history). A subscriber on
each process holds two subscriptions, one in a namespace that keeps history; a WebSocket
publisher on one process and an HTTP publisher on the other publish numbered events, one at a
time, to both channels while the master fails over:

- ``crash``: the master is killed (``SIGKILL``, no goodbye); the Sentinels promote a replica;
- ``manual``: ``SENTINEL FAILOVER`` promotes a replica while the old master keeps running (and
  answering as a master until Sentinel demotes it, seconds later).

What must hold (docs/DEPLOYMENT.md, "Redis Sentinel"):

- every publish is answered, within the client's timeout, either with success or with
  ``ServiceUnavailable`` in the protocol's shape (``publish_error`` / HTTP 503), nothing else;
- every acknowledged event reaches every subscription of its channel exactly once, in publish
  order, on both processes. The documented exception is a window around the switch, where an
  event may be missing (or doubled) at the other process's subscribers: within
  :data:`REPLICATION_WINDOW` of a crash; in a manual failover, until the servers have left the
  old master (watched on it: they must leave within :data:`LEAVE_BOUND`, before Sentinel demotes
  it). The test counts those and allows no other;
- a refused event reaches no subscriber of the publisher's own process;
- the site delivers again within :data:`RECOVERY_BOUND`, with no restart; new subscribes and
  publishes work on both processes afterwards, and ``/readyz`` says ready on both within
  :data:`READY_BOUND`.

Figures (failover, errors seen by clients, recovery, events in the window) are printed: ``-s``
shows them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection

from realtime.store.redis import MASTER_CHECK_INTERVAL

from .conftest import DaphneFactory, DaphneServer, enable_history
from .sentinel import SentinelGroup
from .test_daphne import (
    TIMEOUT,
    assert_exactly,
    assert_silent,
    data_frames,
    handshake,
    http_publish,
    open_socket,
    recv_frames,
    send,
    subscribe,
)
from .test_multiprocess import SERVICE_UNAVAILABLE, Collector, get

pytestmark = pytest.mark.e2e

HISTORY_NAMESPACE = "failover"
# Traffic before the crash, and after the site delivers again.
STEADY = 1.5
# Pause between one publisher's publishes (each waits for its answer first).
PUBLISH_INTERVAL = 0.03
# Sentinels call the master down after 1 s (sentinel.DOWN_AFTER_MS), vote and promote a replica
# (about 2 s here); a bridge that lost its layer retries with a backoff capped at 2 s.
FAILOVER_BOUND = 15.0
RECOVERY_BOUND = 15.0
# An event the master acknowledged this shortly before it died may not have reached a replica
# nor the other process's receive loop (docs/DEPLOYMENT.md, "Redis Sentinel"): Redis answers the
# publisher and streams the write to its replicas in the same pass of its event loop, so the
# window is the time that pass takes, well under a millisecond; the bound here is generous for a
# shared 2-core machine.
REPLICATION_WINDOW = 0.1
# In a manual failover the servers write to the old master until they leave it: each pool asks
# a Sentinel again within realtime.store.redis.MASTER_CHECK_INTERVAL, and a connection blocked
# in a layer read (channels_redis's BZPOPMIN, 5 s at most) is closed when the read ends.
LEAVE_BOUND = MASTER_CHECK_INTERVAL + 5.0 + 3.0
# /readyz pings through the master the Sentinels name, and the process reads it only once its
# layer read has left the master before (it runs its course there, 5 s at most, to drain what the
# processes yet to move still write: docs/DEPLOYMENT.md, "Redis Sentinel"). Usually long over by the
# time the test asks, but the Sentinels can promote a second replica seconds after the first
# (seen once in a CI run: a second replica named 2 s after the first, /readyz asked 1 s after that):
# ready within the pool's next check, that read's end and slack for the 2 s probe itself.
READY_BOUND = MASTER_CHECK_INTERVAL + 5.0 + 3.0
# The test sees the answer of a publish after the write, later on a loaded machine.
SCHEDULING_SLACK = 1.0


@dataclass
class Outcome:
    """One publish and its answer."""

    publisher: str
    label: str  # which channel: "plain" or "hist"
    event: str
    sent_at: float
    answered_at: float
    acknowledged: bool


@pytest.fixture
def sentinel_group(e2e_workdir: Path) -> Iterator[SentinelGroup]:
    """A master, two replicas and three Sentinels of this test's own; stopped at teardown."""
    import shutil

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    group = SentinelGroup.start(e2e_workdir / f"sentinel-{uuid.uuid4().hex[:8]}")
    try:
        yield group
    finally:
        group.stop()


async def ws_publish(ws: ClientConnection, publish_id: str, channel: str, event: str) -> bool:
    """Publish one event; ``True`` if acknowledged, ``False`` if refused as unavailable."""
    await send(ws, {"type": "publish", "id": publish_id, "channel": channel, "events": [event]})
    [answer] = await recv_frames(ws, 1)
    if answer.get("type") == "publish_success":
        assert answer["id"] == publish_id and answer["failed"] == [], answer
        assert [entry["index"] for entry in answer["successful"]] == [0], answer
        return True
    assert answer == {"type": "publish_error", "id": publish_id, "errors": [SERVICE_UNAVAILABLE]}
    return False


async def post_publish(server: DaphneServer, channel: str, event: str) -> bool:
    status, headers, body = await http_publish(server, channel, [event])
    if status == 200:
        assert body["failed"] == [] and [e["index"] for e in body["successful"]] == [0], body
        return True
    assert (status, body) == (503, {"errors": [SERVICE_UNAVAILABLE]})
    assert headers["x-amzn-errortype"] == "ServiceUnavailable"
    assert headers["retry-after"] == "1"
    return False


async def subscribe_history(ws: ClientConnection, sub_id: str, channel: str) -> None:
    await send(ws, {"type": "subscribe", "id": sub_id, "channel": channel})
    [answer] = await recv_frames(ws, 1)
    assert answer == {"type": "subscribe_success", "id": sub_id, "offset": 0, "epoch": answer["epoch"]}


async def ready_within(server: DaphneServer, bound: float) -> None:
    """``/readyz`` answers ready within ``bound`` seconds (asked again every 0.25 s until then)."""
    ready = (200, {"status": "ok", "checks": {"database": "ok", "channel_layer": "ok"}})
    loop = asyncio.get_running_loop()
    started = loop.time()
    answer = await get(server, "/readyz")
    while answer != ready and loop.time() - started < bound:
        await asyncio.sleep(0.25)
        answer = await get(server, "/readyz")
    assert answer == ready, f"/readyz still {answer} {bound:.0f}s after the test first asked"
    if loop.time() - started > 0.5:
        print(f"{server.authority}: /readyz ready {loop.time() - started:.2f}s after the test first asked")


def events_of(collector: Collector, sub_id: str) -> list[str]:
    """The event texts one subscription received, in order (history frames carry an offset too)."""
    return [f["event"] for f in collector.frames if f.get("type") == "data" and f["id"] == sub_id]


@pytest.mark.parametrize("how", ["crash", "manual"])
async def test_the_master_fails_over_under_traffic_and_the_site_carries_on_on_the_new_one(
    sentinel_group: SentinelGroup,
    daphne_factory: DaphneFactory,
    e2e_env: dict[str, str],
    e2e_api_key: str,
    how: str,
) -> None:
    group = sentinel_group
    enable_history(e2e_env, HISTORY_NAMESPACE, 1000)
    a, b = daphne_factory("sentinel-a", "sentinel-b", REDIS_URL=group.url)
    run = uuid.uuid4().hex[:10]
    channels = {"plain": f"/default/fo{run}/room", "hist": f"/{HISTORY_NAMESPACE}/fo{run}/room"}
    loop = asyncio.get_running_loop()

    async with (
        open_socket(a) as sub_a,
        open_socket(b) as sub_b,
        open_socket(a) as pub_ws,
    ):
        for ws in (sub_a, sub_b, pub_ws):
            await handshake(ws)
        for ws in (sub_a, sub_b):
            await subscribe(ws, "plain", channels["plain"])
            await subscribe_history(ws, "hist", channels["hist"])
        # Across processes both ways before anything happens.
        assert await ws_publish(pub_ws, "hello", channels["plain"], '"hello"')
        assert await post_publish(b, channels["hist"], '"hello"')
        for ws in (sub_a, sub_b):
            frames = await recv_frames(ws, 2)
            assert sorted(f["event"] for f in frames) == ['"hello"', '"hello"'], frames

        outcomes: list[Outcome] = []
        killed_at: float | None = None
        killed_by: float | None = None
        # Publishes sent after this must reach every subscriber through the new master.
        recover_after: float | None = None
        recovered_at: float | None = None
        promoted_at: float | None = None
        left_at: float | None = None
        stop = asyncio.Event()
        subscribers = {"a": sub_a, "b": sub_b}

        async with Collector(sub_a) as collector_a, Collector(sub_b) as collector_b:
            collectors = {"a": collector_a, "b": collector_b}

            def delivered_everywhere(outcome: Outcome) -> bool:
                return all(outcome.event in events_of(c, outcome.label) for c in collectors.values())

            async def publisher(name: str, publish: Any) -> None:
                nonlocal recovered_at
                n = 0
                while not stop.is_set():
                    n += 1
                    label = "plain" if n % 2 else "hist"
                    event = json.dumps({"p": name, "n": n})
                    sent_at = loop.time()
                    acknowledged = await publish(f"{name}-{n}", channels[label], event)
                    outcome = Outcome(name, label, event, sent_at, loop.time(), acknowledged)
                    outcomes.append(outcome)
                    if (
                        acknowledged
                        and recover_after is not None
                        and sent_at > recover_after
                        and recovered_at is None
                    ):
                        # Delivered everywhere soon after: the site works on the new master.
                        for _ in range(40):
                            if delivered_everywhere(outcome):
                                recovered_at = recovered_at or loop.time()
                                break
                            await asyncio.sleep(0.025)
                    await asyncio.sleep(PUBLISH_INTERVAL)

            async def over_websocket(publish_id: str, channel: str, event: str) -> bool:
                return await ws_publish(pub_ws, publish_id, channel, event)

            async def over_http(publish_id: str, channel: str, event: str) -> bool:
                return await post_publish(b, channel, event)

            async def scenario() -> None:
                nonlocal killed_at, killed_by, recover_after, promoted_at, left_at
                await asyncio.sleep(STEADY)
                # The kill (or the command) happens between these two instants.
                killed_at = loop.time()
                await asyncio.to_thread(group.kill_master if how == "crash" else group.fail_over)
                killed_by = loop.time()
                if how == "crash":
                    # Nothing works until the new master does.
                    recover_after = killed_by
                promoted = await asyncio.to_thread(group.wait_for_new_master, FAILOVER_BOUND)
                promoted_at = loop.time()
                print(f"\n{how}: port {promoted.port} is the master {promoted_at - killed_at:.2f}s after it")
                if how == "manual":
                    # The old master works on meanwhile; each pool leaves it once it asks a
                    # Sentinel again, a connection blocked in a read when that read ends.
                    await asyncio.to_thread(group.wait_until_left, group.master, LEAVE_BOUND)
                    left_at = recover_after = loop.time()
                    print(f"the servers left the old master {left_at - promoted_at:.2f}s after that")
                async with asyncio.timeout(RECOVERY_BOUND):
                    while recovered_at is None:  # noqa: ASYNC110 - the publishers set it
                        await asyncio.sleep(0.05)
                await asyncio.sleep(STEADY)
                stop.set()

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(publisher("ws-a", over_websocket))
                tasks.create_task(publisher("http-b", over_http))
                tasks.create_task(scenario())

            # Everything acknowledged has had time to arrive once the last one did.
            acknowledged = [o for o in outcomes if o.acknowledged]
            async with asyncio.timeout(TIMEOUT):
                while not all(delivered_everywhere(o) for o in acknowledged[-4:]):  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)

        assert killed_at is not None and killed_by is not None
        assert recovered_at is not None and promoted_at is not None
        refused = [o for o in outcomes if not o.acknowledged]
        print(
            f"publishes: {len(outcomes)}, acknowledged {len(acknowledged)}, refused {len(refused)}; "
            f"refused from {min(o.sent_at for o in refused) - killed_at:+.2f}s "
            f"to {max(o.answered_at for o in refused) - killed_at:+.2f}s after the crash; "
            f"delivering again {recovered_at - killed_at:.2f}s after it"
            if refused
            else f"publishes: {len(outcomes)}, none refused"
        )
        if how == "crash":
            # The crash was felt (publishes were refused meanwhile).
            assert refused, "no publish was refused: the failover went unnoticed, so this proved nothing"
            window = (killed_at - REPLICATION_WINDOW, killed_by + REPLICATION_WINDOW)
        else:
            # The old master answered until the servers left it.
            assert left_at is not None
            window = (killed_at, left_at + SCHEDULING_SLACK)
        assert recovered_at - killed_at < RECOVERY_BOUND
        # Each publisher was answered promptly throughout (the client's timeout never hit).
        assert max(o.answered_at - o.sent_at for o in outcomes) < TIMEOUT

        origin = {"ws-a": "a", "http-b": "b"}
        in_window: list[tuple[str, str, int]] = []
        for where, collector in collectors.items():
            for label in ("plain", "hist"):
                received = Counter(events_of(collector, label))
                # Nothing arrived that was never published.
                published = {o.event for o in outcomes if o.label == label} | {'"hello"'}
                assert set(received) <= published
                for o in outcomes:
                    if o.label != label:
                        continue
                    count = received[o.event]
                    near_crash = window[0] <= o.answered_at <= window[1]
                    if o.acknowledged and count == 1:
                        continue
                    if origin[o.publisher] == where:
                        # The publisher's own process delivers only what the layer took, once.
                        assert (count, o.acknowledged) == (0, False), (where, o)
                    elif o.acknowledged or count > 1:
                        # Lost or doubled across processes: only within the replication window.
                        assert near_crash, (
                            f"{o.event} at {where}: {count} copies, answered "
                            f"{o.answered_at - killed_at:+.3f}s after the failover began, outside "
                            f"[{window[0] - killed_at:+.3f}, {window[1] - killed_at:+.3f}]"
                        )
                        in_window.append((where, o.event, count))
                # Each publisher's events arrive in the order it published them (first copies).
                for name in origin:
                    numbers = [
                        json.loads(e)["n"]
                        for e in dict.fromkeys(events_of(collector, label))
                        if e != '"hello"' and json.loads(e)["p"] == name
                    ]
                    assert numbers == sorted(numbers), (where, label, name, numbers)
        print(f"acknowledged and lost or doubled within the documented window: {in_window}")
        # The history stream gave each publication one offset, the same at both processes, and no
        # two publications the same one, before and after the switch; within the window the
        # stream of the old master may have lost appends that the new one numbers again.
        # (Offsets need not arrive in order: the two publishers publish from different processes.)
        outside = {o.event for o in outcomes if not window[0] <= o.answered_at <= window[1]} | {'"hello"'}
        offsets = [
            {
                f["event"]: f["offset"]
                for f in collector.frames
                if f.get("type") == "data" and f["id"] == "hist" and f["event"] in outside
            }
            for collector in collectors.values()
        ]
        assert offsets[0] == offsets[1]
        assert len(set(offsets[0].values())) == len(offsets[0])

        # -- afterwards: new subscriptions and publishes on both processes, exactly, then silence --------
        fresh = f"/default/fo{run}/fresh"
        for ws in subscribers.values():
            await subscribe(ws, "fresh", fresh)
        assert await ws_publish(pub_ws, "after-ws", fresh, '"after-ws"')
        assert await post_publish(b, fresh, '"after-http"')
        for ws in subscribers.values():
            assert_exactly(await recv_frames(ws, 2), data_frames("fresh", ['"after-ws"', '"after-http"']))
        await asyncio.gather(*(assert_silent(ws) for ws in (*subscribers.values(), pub_ws)))
        for server in (a, b):
            await ready_within(server, READY_BOUND)
