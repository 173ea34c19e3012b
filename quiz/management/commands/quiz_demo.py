"""``quiz_demo``: a playable demo: a host login, an API key and a game open for joining.

The join code is printed alone on the last line.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser

from quiz import services
from realtime.store.services import apikey_create

DEMO_QUESTIONS = Path(__file__).resolve().parents[2] / "fixtures" / "demo_questions.json"


class Command(BaseCommand):
    help = "Seed a demo game with questions and a host login; print the join code last."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="host")
        parser.add_argument("--base-url", default="http://127.0.0.1:8000")
        parser.add_argument("--questions", default=str(DEMO_QUESTIONS), help="A question set as JSON.")

    def handle(self, *args: Any, username: str, base_url: str, questions: str, **options: Any) -> None:
        password = secrets.token_urlsafe(9)
        host, _ = get_user_model().objects.get_or_create(username=username)
        host.is_staff = host.is_superuser = True
        host.set_password(password)
        host.save()
        _, api_key = apikey_create(description="demo")
        question_set = services.question_set_import(data=json.loads(Path(questions).read_text()))
        game = services.game_open(game=services.game_create(host=host, question_set=question_set))
        self.stderr.write(
            "\n".join(
                [
                    "",
                    f"  Players join:  {base_url}/quiz/{game.code}/",
                    f"  Host console:  {base_url}/quiz/{game.code}/host/",
                    f"  Big screen:    {base_url}/quiz/{game.code}/screen/",
                    f"  Realtime console: {base_url}/realtime/console/   Admin: {base_url}/admin/",
                    f"  Host login:    {username} / {password}",
                    f"  API key:       {api_key}",
                    "  Join code:",
                ]
            )
        )
        self.stdout.write(game.code)
