from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wiring only: checks, cache invalidation, handler modules.
        from django.utils.module_loading import autodiscover_modules

        from . import checks, receivers  # noqa: F401
        from .conf import realtime_settings

        autodiscover_modules(realtime_settings.handler_module)
