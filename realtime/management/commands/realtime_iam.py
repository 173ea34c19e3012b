"""``realtime_iam create|list|revoke``: manage the access keys of the IAM (SigV4) mode."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.models import IamCredential
from realtime.store.services import iamcredential_create, iamcredential_revoke


class Command(BaseCommand):
    help = "Create, list and revoke access keys for the IAM (SigV4) auth mode."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser(
            "create",
            help="Create a key pair; the last two lines printed are the access key id and the secret.",
        )
        create.add_argument("--description", default="")
        create.add_argument(
            "--no-connect", action="store_true", help="Refuse appsync:EventConnect (WebSocket connections)."
        )
        create.add_argument(
            "--publish",
            nargs="+",
            default=[],
            metavar="NAMESPACE",
            help='appsync:EventPublish on these namespaces ("*" for all).',
        )
        create.add_argument(
            "--subscribe",
            nargs="+",
            default=[],
            metavar="NAMESPACE",
            help='appsync:EventSubscribe on these namespaces ("*" for all).',
        )
        create.add_argument("--account-id", default="", help="ctx.identity.accountId (12 digits).")
        create.add_argument("--username", default="", help="ctx.identity.username.")
        create.add_argument("--user-arn", default="", help="ctx.identity.userArn.")
        sub.add_parser("list", help="List access key ids and their scopes (never the secrets).")
        revoke = sub.add_parser("revoke", help="Revoke a key by its access key id.")
        revoke.add_argument("access_key_id")

    def handle(self, *args: Any, action: str, **options: Any) -> None:
        if action == "create":
            try:
                credential = iamcredential_create(
                    description=options["description"],
                    can_connect=not options["no_connect"],
                    publish_namespaces=options["publish"],
                    subscribe_namespaces=options["subscribe"],
                    account_id=options["account_id"],
                    username=options["username"],
                    user_arn=options["user_arn"],
                )
            except ValidationError as error:
                raise CommandError("; ".join(error.messages)) from None
            self.stderr.write(
                f"Created IAM credential ({_scopes(credential)}). Access key id, then secret access key:"
            )
            self.stdout.write(credential.access_key_id)
            self.stdout.write(credential.secret_access_key)
        elif action == "list":
            for credential in IamCredential.objects.all():
                if credential.revoked_at:
                    state = f"revoked {credential.revoked_at:%Y-%m-%d %H:%M}"
                else:
                    state = "active"
                self.stdout.write(
                    f"{credential.access_key_id}\t{state}\t{_scopes(credential)}\t{credential.description}"
                )
        elif action == "revoke":
            count = iamcredential_revoke(access_key_id=options["access_key_id"])
            if count == 0:
                raise CommandError(
                    f"No active IAM credential has the access key id {options['access_key_id']!r}."
                )
            self.stdout.write(f"Revoked {options['access_key_id']}.")


def _scopes(credential: IamCredential) -> str:
    publish = ",".join(credential.publish_namespaces) or "-"
    subscribe = ",".join(credential.subscribe_namespaces) or "-"
    connect = "yes" if credential.can_connect else "no"
    return f"connect: {connect}, publish: {publish}, subscribe: {subscribe}"
