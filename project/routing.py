"""WebSocket routes of every app, resolved after the middleware stack ran (realtime.handshake)."""

from chat.routing import websocket_urlpatterns as chat_routes
from ticker.routing import websocket_urlpatterns as ticker_routes

urlpatterns = [*chat_routes, *ticker_routes]
