"""The project's ASGI app with the echo topic's WebSocket route: what core tests serve on real servers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

import realtime.asgi  # noqa: E402
from realtime import buses  # noqa: E402

buses.check()
application = realtime.asgi.application(django_asgi_app, "tests.realtime.echo_routes")
