from django.apps import AppConfig


class QuizConfig(AppConfig):
    """The live trivia game show, built on ``realtime``'s public API."""

    name = "quiz"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import receivers  # noqa: F401
