"""The echo site's WebSocket routes: the echo topic's, then every installed app's (the page logged in on)."""

from realtime.routing import urlpatterns as app_routes
from tests.realtime.echo import websocket_urlpatterns as echo_routes

urlpatterns = [*echo_routes, *app_routes]
