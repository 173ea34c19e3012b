from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime events"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Wiring only: checks, receivers, background services, handler modules.
        from django.utils.module_loading import autodiscover_modules

        from realtime import checks, receivers  # noqa: F401
        from realtime.conf import realtime_settings
        from realtime.delivery.bridge import bridge
        from realtime.lifecycle import lifecycle
        from realtime.operations.relay import SERVICE, relay, runs_in_process
        from realtime.ops.dashboard import sampler_run
        from realtime.presence.service import occupancy
        from realtime.transport.connection import keepalive_run

        lifecycle.register("keepalive", keepalive_run)
        lifecycle.register("layer-bridge", bridge.run)
        lifecycle.register("dashboard-sampler", sampler_run)
        lifecycle.register("occupancy", occupancy.run)
        lifecycle.register(SERVICE, relay.run, enabled=runs_in_process)
        receivers.connect_session_receivers()
        autodiscover_modules(realtime_settings.handler_module)
