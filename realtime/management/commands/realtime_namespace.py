"""``realtime_namespace create|list|delete``: manage namespaces from the shell."""

from __future__ import annotations

import argparse
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.models import AuthMode, Namespace
from realtime.store.services import namespace_create, namespace_delete


def _modes(value: str) -> list[str]:
    modes = [mode.strip().upper() for mode in value.split(",") if mode.strip()]
    unknown = [mode for mode in modes if mode not in AuthMode.values]
    if unknown:
        # argparse shows the text of an ArgumentTypeError; a ValueError's is lost.
        raise argparse.ArgumentTypeError(f"unknown auth mode(s): {', '.join(unknown)}")
    return modes


class Command(BaseCommand):
    help = "Create, list and delete realtime namespaces."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a namespace.")
        create.add_argument("name")
        create.add_argument("--description", default="")
        create.add_argument("--publish-auth", type=_modes, default=[], metavar="MODE[,MODE]")
        create.add_argument("--subscribe-auth", type=_modes, default=[], metavar="MODE[,MODE]")
        create.add_argument(
            "--history-size",
            type=int,
            default=0,
            metavar="N",
            help="Publications kept per channel (0: none).",
        )
        create.add_argument("--history-ttl", type=int, default=300, metavar="SECONDS")
        sub.add_parser("list", help="List namespaces.")
        delete = sub.add_parser("delete", help="Delete a namespace.")
        delete.add_argument("name")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "create":
            try:
                namespace = namespace_create(
                    name=options["name"],
                    description=options["description"],
                    publish_auth_modes=options["publish_auth"],
                    subscribe_auth_modes=options["subscribe_auth"],
                    history_size=options["history_size"],
                    history_ttl=options["history_ttl"],
                )
            except ValidationError as error:
                raise CommandError("; ".join(error.messages)) from None
            self.stdout.write(f"Created namespace {namespace.name}")
        elif action == "list":
            for namespace in Namespace.objects.all():
                publish = ",".join(namespace.publish_auth_modes) or "(defaults)"
                subscribe = ",".join(namespace.subscribe_auth_modes) or "(defaults)"
                history = (
                    f"\thistory={namespace.history_size}/{namespace.history_ttl}s"
                    if namespace.history_size
                    else ""
                )
                self.stdout.write(
                    f"{namespace.name}\tpublish={publish}\tsubscribe={subscribe}{history}\t{namespace.description}"
                )
        elif action == "delete":
            try:
                namespace_delete(name=options["name"])
            except Namespace.DoesNotExist:
                raise CommandError(f"No namespace is called {options['name']!r}.") from None
            self.stdout.write(f"Deleted namespace {options['name']}")
