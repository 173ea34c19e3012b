"""``realtime_apikey create|list|revoke``: manage API keys from the shell."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.models import ApiKey
from realtime.store.services import apikey_create, apikey_revoke


class Command(BaseCommand):
    help = "Create, list and revoke realtime API keys."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create a key; the key alone is the last line printed.")
        create.add_argument("--description", default="")
        create.add_argument("--expires-in", type=float, metavar="DAYS", default=None)
        sub.add_parser("list", help="List keys by their visible prefix.")
        revoke = sub.add_parser("revoke", help="Revoke a key by its visible prefix.")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "create":
            expires = options["expires_in"]
            if expires is not None and expires <= 0:
                raise CommandError("--expires-in must be a positive number of days.")
            api_key, raw_key = apikey_create(description=options["description"], expires_in_days=expires)
            expiry = api_key.expires_at.isoformat() if api_key.expires_at else "never"
            self.stderr.write(
                f"Created API key {api_key.prefix}… (expires: {expiry}). It is shown only once:"
            )
            self.stdout.write(raw_key)
        elif action == "list":
            for api_key in ApiKey.objects.all():
                if api_key.revoked_at:
                    state = f"revoked {api_key.revoked_at:%Y-%m-%d %H:%M}"
                elif not api_key.is_usable():
                    state = "expired"
                else:
                    state = "active"
                expiry = f"{api_key.expires_at:%Y-%m-%d %H:%M}" if api_key.expires_at else "never"
                self.stdout.write(f"{api_key.prefix}\t{state}\texpires {expiry}\t{api_key.description}")
        elif action == "revoke":
            count = apikey_revoke(prefix=options["prefix"])
            if count == 0:
                raise CommandError(f"No active API key has the prefix {options['prefix']!r}.")
            self.stdout.write(f"Revoked {count} API key(s).")
