"""The echo topic's WebSocket route (the urlconf realtime.handshake resolves for core tests)."""

from tests.realtime.echo import websocket_urlpatterns as urlpatterns

__all__ = ["urlpatterns"]
