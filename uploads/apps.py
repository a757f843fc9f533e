from django.apps import AppConfig


class UploadsConfig(AppConfig):
    """Resumable uploads (tus 1.0) with live progress over the uploader's sockets."""

    name = "uploads"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Declare the uploads' metrics and error codes (realtime.counter, realtime.register_error_codes)."""
        from . import metrics  # noqa: F401
