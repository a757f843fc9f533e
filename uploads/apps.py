from django.apps import AppConfig


class UploadsConfig(AppConfig):
    """Resumable uploads (tus 1.0) with live progress over the uploader's sockets."""

    name = "uploads"
    default_auto_field = "django.db.models.BigAutoField"
