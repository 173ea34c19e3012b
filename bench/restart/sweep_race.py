"""``python -m bench.restart.sweep_race``: first subscribers joining while the bridge sweeps, on a real Redis.

    REDIS_URL=redis://127.0.0.1:6379/9 python -m bench.restart.sweep_race --keys 2000 [--unfixed]

Two layer bridges in one process, each with its own channels_redis layer (the production
capacity): ``--keys`` subscribers, each the first (and only) one of its key, as a player's
private channel, join at once on the first bridge while its sweep runs every ``--sweep-every``
seconds (the server sweeps every 10 s: sweeping more often makes the race, rare per sweep, show
in a short run). Then the second bridge sends one event to each key's group, and the run counts
the subscribers that heard nothing. ``--unfixed`` puts back the sweep of before the fix (it left
a joined key nobody held yet, i.e. whose subscriber had not been indexed yet).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
from typing import Any

import django


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=2000)
    parser.add_argument("--sweep-every", type=float, default=0.002)
    parser.add_argument("--unfixed", action="store_true", help="The sweep of before the fix.")
    args = parser.parse_args()
    if not os.environ.get("REDIS_URL"):
        parser.error("set REDIS_URL (a Redis database of your own: the run's keys are flushed after it)")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.base")
    django.setup()
    asyncio.run(_run(args.keys, args.sweep_every, args.unfixed))


async def _run(count: int, sweep_every: float, unfixed: bool) -> None:
    from channels_redis.core import RedisChannelLayer  # type: ignore[import-untyped]

    from realtime.core import protocol
    from realtime.core.paths import parse_channel
    from realtime.delivery import bridge as bridge_module
    from realtime.delivery.bridge import LayerBridge, group_name_for
    from realtime.delivery.hub import Hub, LocalSubscription
    from realtime.delivery.outbox import Outbox

    layers = [
        RedisChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix=f"sweeprace{os.getpid()}", capacity=10_000)
        for _ in range(2)
    ]
    bridge_module.get_channel_layer = itertools.cycle(layers).__next__  # type: ignore[assignment]
    subscribers, publisher = LayerBridge(Hub()), LayerBridge(Hub())
    await subscribers._bind()
    await publisher._bind()
    if unfixed:

        def old_sweep(self: LayerBridge) -> None:
            loop = asyncio.get_running_loop()
            for key in [k for k, task in self._joined.items() if task.done() and not self.hub.holds(k)]:
                del self._joined[key]
                self._leaving[key] = loop.create_task(self._leave(key))

        subscribers._sweep = old_sweep.__get__(subscribers)  # type: ignore[method-assign]

    heard: set[int] = set()

    async def subscribe(n: int) -> str:
        async def send(message: dict[str, Any], n: int = n) -> None:
            heard.add(n)

        outbox = Outbox(send, limit=1_000, on_overflow=lambda: None)
        outbox.start()
        channel = parse_channel(f"/quiz/RACE/players/{n}", allow_wildcard=False)
        subscription = LocalSubscription.create(outbox, "me", channel)
        # As realtime.operations.subscribing.subscription_start: join, then index, no await between.
        await subscribers.join(subscription.key)
        subscribers.hub.add(subscription)
        return subscription.key

    sweeping = True

    async def sweep() -> None:
        while sweeping:
            await asyncio.sleep(sweep_every)
            subscribers._sweep()

    receiving = asyncio.create_task(subscribers._receive_loop())
    sweeper = asyncio.create_task(sweep())
    keys = await asyncio.gather(*(subscribe(n) for n in range(count)))
    sweeping = False
    await sweeper
    await asyncio.sleep(0.5)  # the leaves the sweeps started reach Redis
    event = [protocol.encode_event(json.dumps("score"))]
    for key in keys:
        message = {"type": "realtime.event", "key": key, "events": event, "origin": "publisher"}
        await publisher._layer.group_send(group_name_for(key), message)  # type: ignore[union-attr]
    await asyncio.sleep(3)  # the receive loop takes them in
    receiving.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await receiving
    left = sum(1 for key in keys if key not in subscribers._joined)
    print(
        f"{'unfixed' if unfixed else 'fixed'} sweep: {count} first subscribers, "
        f"{count - len(heard)} heard nothing, {left} keys left while their subscriber was live"
    )
    for layer in layers:
        await layer.flush()


if __name__ == "__main__":
    main()
