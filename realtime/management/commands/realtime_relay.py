"""``realtime_relay``: publish what ``realtime.publish_on_commit`` wrote, for a scaled-out site.

Run one (or, on PostgreSQL, several) beside the server processes when
``REALTIME["RELAY"]`` is ``"external"`` (the site's default with ``REDIS_URL``).
Stop it at any time: a row is deleted only once published, so what is pending
waits for the next start (realtime.operations.relay).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

from channels.layers import get_channel_layer
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.conf import realtime_settings
from realtime.delivery.bridge import leaves_process
from realtime.operations.relay import relay


class Command(BaseCommand):
    help = "Publish events written with realtime.publish_on_commit until stopped."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="Publish what is pending, then exit.")

    def handle(self, *args: Any, once: bool, **options: Any) -> None:
        if realtime_settings.relay != "external":
            raise CommandError(
                "REALTIME['RELAY'] is not 'external': the server processes relay themselves. "
                "Set it to 'external' to run the relay beside them."
            )
        if not leaves_process(get_channel_layer()):
            # Published here, the events would reach nobody, and their rows would be gone.
            raise CommandError("The channel layer does not leave this process: configure channels_redis.")
        if once:
            outcome = asyncio.run(relay.drain())
            self.stdout.write(f"Published {outcome.published} publication(s), dropped {outcome.dropped}.")
            if outcome.failed:
                raise CommandError("Some publications could not be published; they are still pending.")
            return
        self.stderr.write("realtime relay running; Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(_run_until_terminated())


async def _run_until_terminated() -> None:
    """The relay, stopped cleanly by SIGTERM (its round in flight finishes first)."""
    task = asyncio.ensure_future(relay.run())
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
