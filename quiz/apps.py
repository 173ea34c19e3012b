from django.apps import AppConfig


class QuizConfig(AppConfig):
    """The live trivia game show, built on ``realtime``'s public API."""

    name = "quiz"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wiring only: checks, signal receivers, the background services.
        from realtime.lifecycle import lifecycle

        from . import autopilot, checks, receivers, worker  # noqa: F401
        from .coalescer import SERVICE as FEEDS
        from .coalescer import run_in_server

        lifecycle.register(worker.SERVICE, worker.run_in_process, enabled=worker.runs_in_process)
        lifecycle.register(FEEDS, run_in_server)
        # Automatic reveal and next run where the answers are scored: one per site.
        lifecycle.register(autopilot.SERVICE, autopilot.run_in_process, enabled=worker.runs_in_process)
