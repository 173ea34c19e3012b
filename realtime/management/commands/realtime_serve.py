"""``realtime_serve``: the site on N server processes sharing one port, with its companions, supervised.

    python manage.py realtime_serve --processes 2 --port 8000 --command quiz_worker [--server uvicorn]

Opens the listening socket once and starts N server processes that accept on
it: daphne (:mod:`realtime.serving.server`, the default) or uvicorn with its
``websockets-sansio`` protocol (:mod:`realtime.serving.uvicorn_server`);
``realtime_relay`` when the relay runs outside the servers
(``REALTIME["RELAY"] = "external"``, the default with Redis), and every
``--command`` (a management command of the site, e.g. the quiz's scoring
worker). Each child's lines are prefixed with its name; a child that dies is
started again. ``SIGHUP``: rolling restart; ``SIGTERM`` to one server process:
it drains and is started again; ``SIGTERM`` to this command: everything drains
and stops (:mod:`realtime.serving.supervisor`).

More than one process needs a channel layer the processes share (Redis):
on the in-memory layer the command refuses.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.conf import realtime_settings
from realtime.serving.supervisor import ChildSpec, Supervisor, environment, servers

IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"
# The servers a process can run; the first is the default.
SERVERS = ("daphne", "uvicorn")
# Connections the kernel completes and queues for the servers to accept.
BACKLOG = 4096


class Command(BaseCommand):
    help = (
        "Serve the site on N processes sharing one port, with the relay and the given commands, supervised."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--processes", type=int, default=1, help="Server processes (default 1).")
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000, help="0: any free port (printed).")
        parser.add_argument(
            "--command",
            action="append",
            default=[],
            metavar="NAME",
            help="A management command to run beside the servers (repeatable), e.g. quiz_worker.",
        )
        parser.add_argument(
            "--drain-timeout",
            type=float,
            default=30.0,
            help="Seconds a server may take to drain on SIGTERM before it stops anyway.",
        )
        parser.add_argument(
            "--server",
            choices=SERVERS,
            default=SERVERS[0],
            help="The server each process runs (default daphne; uvicorn: its websockets-sansio protocol).",
        )
        # Internal: how the supervisor starts each server process.
        parser.add_argument("--server-fd", type=int, help="(internal) serve on this inherited socket")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["server_fd"] is not None:
            if not _serve(options["server"], options["server_fd"], drain_timeout=options["drain_timeout"]):
                raise CommandError(f"could not serve on file descriptor {options['server_fd']}")
            return
        processes = options["processes"]
        if processes < 1:
            raise CommandError("--processes must be at least 1")
        if processes > 1 and _in_memory_layer():
            raise CommandError(
                f"--processes {processes} needs a channel layer every process shares: set REDIS_URL "
                "(the in-memory layer delivers only within one process)."
            )
        listener = _listen(options["host"], options["port"])
        host, port = listener.getsockname()[:2]
        self.stdout.write(
            f"[serve] listening on {host}:{port} ({processes} {options['server']} server processes)"
        )
        fd = listener.fileno()
        specs = servers(
            processes,
            lambda _: [
                *_manage(),
                "realtime_serve",
                "--server",
                options["server"],
                "--server-fd",
                str(fd),
                "--drain-timeout",
                str(options["drain_timeout"]),
            ],
        )
        companions = (["realtime_relay"] if realtime_settings.relay == "external" else []) + options[
            "command"
        ]
        specs += [ChildSpec(name=name, argv=[*_manage(), name]) for name in dict.fromkeys(companions)]
        supervisor = Supervisor(
            specs, pass_fds=[fd], env=environment({}), stop_timeout=options["drain_timeout"] + 10
        )
        try:
            asyncio.run(supervisor.run())
        finally:
            listener.close()


def _serve(server: str, fd: int, *, drain_timeout: float) -> bool:
    """Run one server process on the inherited socket ``fd``; False if it could not start."""
    from django.utils.module_loading import import_string

    def application() -> Any:
        return import_string(settings.ASGI_APPLICATION)

    if server == "uvicorn":
        from realtime.serving.uvicorn_server import serve_uvicorn_on_fd

        # It loads the application itself, once its WebSocket protocol is imported.
        return serve_uvicorn_on_fd(application, fd, drain_timeout=drain_timeout)
    from realtime.serving.server import serve_on_fd

    return serve_on_fd(application(), fd, drain_timeout=drain_timeout)


def _in_memory_layer() -> bool:
    layers = getattr(settings, "CHANNEL_LAYERS", {}) or {}
    backend = layers.get("default", {}).get("BACKEND", IN_MEMORY_LAYER)
    return bool(backend == IN_MEMORY_LAYER)


def _listen(host: str, port: int) -> socket.socket:
    """The site's listening socket, opened once, inherited by every server process."""
    if ":" in host:
        # Daphne adopts the socket through Twisted's fd endpoint, which takes IPv4 only.
        raise CommandError(f"--host {host}: the servers listen on IPv4 (the proxy may take IPv6)")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise CommandError(f"cannot listen on {host}:{port}: {error}") from error
    listener.listen(BACKLOG)
    listener.set_inheritable(True)
    return listener


def _manage() -> list[str]:
    """How to run a management command of this site in a child process."""
    script = os.path.abspath(sys.argv[0])
    if os.path.basename(script) == "manage.py":
        return [sys.executable, script]
    return [sys.executable, "-m", "django"]
