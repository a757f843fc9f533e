"""The project's WebSocket routes: every installed app's ``routing.websocket_urlpatterns``.

As the admin finds each app's ``admin.py``, this collects each app's
``routing.py``: an app brings its WebSocket routes by being installed, and
removing it takes them away. ``realtime.asgi.application(http_app,
"realtime.routing")`` resolves handshakes against ``urlpatterns`` here, after
the middleware stack ran (realtime.handshake). Imported on the first
handshake, once Django is set up.
"""

from __future__ import annotations

import importlib

from django.apps import apps
from django.utils.module_loading import module_has_submodule


def app_websocket_urlpatterns() -> list:
    """Return the ``websocket_urlpatterns`` of every installed app's ``routing`` module, in app order."""
    patterns: list = []
    for config in apps.get_app_configs():
        if config.name == __package__ or not module_has_submodule(config.module, "routing"):
            continue
        module = importlib.import_module(f"{config.name}.routing")
        patterns.extend(getattr(module, "websocket_urlpatterns", ()))
    return patterns


urlpatterns = app_websocket_urlpatterns()
