"""ASGI entry point: Django's HTTP app, and WebSockets behind the same MIDDLEWARE."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
# Build Django's app first: it sets Django up before any model is imported.
django_asgi_app = get_asgi_application()

import realtime.asgi  # noqa: E402
from realtime import buses  # noqa: E402
from realtime.busguard import require_single_server  # noqa: E402
from realtime.services import require_redis  # noqa: E402
from realtime.tuning import tune_gc  # noqa: E402

# Refuse to start, with a clear message, rather than hang on a dead Redis or run on a bus
# the settings cannot carry (REALTIME_BUS=postgres on SQLite).
buses.check()
require_redis()
# Refuse to be a second server on the in-process bus, which would serve half an app.
require_single_server()


def build_application(http_app=None):
    """Return the project's ASGI app, loading MIDDLEWARE as the settings stand now.

    WebSocket routes are every installed app's ``routing.websocket_urlpatterns`` (realtime.routing).
    """
    return realtime.asgi.application(http_app or get_asgi_application(), "realtime.routing")


application = build_application(django_asgi_app)
# Thousands of long-lived sockets: freeze the startup heap, collect less often.
tune_gc()
