from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    """The core: one middleware stack, one identity, one event bus, one connection lifecycle."""

    name = "realtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Called once Django is set up: credential signals, Daphne's close codes, the bus's jobs."""
        from django.conf import settings

        from . import busreader, metrics, presence, presence_peers, signals  # noqa: F401
        from .daphne_compat import patch_daphne

        patch_daphne()
        busreader.register_jobs()
        presence_peers.register_jobs()
        if not getattr(settings, "REALTIME_METRICS", True):
            metrics.disable()
