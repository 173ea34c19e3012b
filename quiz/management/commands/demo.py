"""``demo``: make the site ready to try: a staff login and an API key, printed."""

from __future__ import annotations

import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from realtime.models import Namespace
from realtime.services import apikey_create


class Command(BaseCommand):
    help = "Prepare the demo: namespace 'default', a staff user and a fresh API key."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")

    def handle(self, *args: Any, username: str, base_url: str, **options: Any) -> None:
        Namespace.objects.get_or_create(name="default")
        password = secrets.token_urlsafe(9)
        user, _ = get_user_model().objects.get_or_create(username=username)
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        _, raw_key = apikey_create(description="demo")
        self.stdout.write(
            "\n".join(
                [
                    "",
                    f"  Console:   {base_url}/realtime/console/",
                    f"  Admin:     {base_url}/admin/",
                    f"  Login:     {username} / {password}",
                    f"  Publish:   POST {base_url}/event",
                    f"  Subscribe: {base_url.replace('http', 'ws', 1)}/event/realtime",
                    f"  API key:   {raw_key}",
                    "",
                ]
            )
        )
