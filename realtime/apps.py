from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wiring only: checks, receivers, background services, handler modules.
        from django.utils.module_loading import autodiscover_modules

        from . import checks, receivers  # noqa: F401
        from .bridge import bridge
        from .conf import realtime_settings
        from .connection import keepalive_run
        from .dashboard import sampler_run
        from .lifecycle import lifecycle
        from .relay import SERVICE, relay, runs_in_process

        lifecycle.register("keepalive", keepalive_run)
        lifecycle.register("layer-bridge", bridge.run)
        lifecycle.register("dashboard-sampler", sampler_run)
        lifecycle.register(SERVICE, relay.run, enabled=runs_in_process)
        autodiscover_modules(realtime_settings.handler_module)
