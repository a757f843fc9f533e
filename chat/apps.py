from django.apps import AppConfig


class ChatConfig(AppConfig):
    """The chat: rooms, messages, typing and presence, over WebSocket, SSE and HTTP."""

    name = "chat"
    # The header's link (realtime.navigation).
    realtime_pages = [("Chat", "lobby")]
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Called once Django is set up: connect the model and upload signals."""
        from . import signals  # noqa: F401
