"""The echo topic served for a browser: settings, URLs and the ASGI app of a live server.

A core browser test runs a Daphne on ``tests.realtime.echo_site:application``
with ``DJANGO_SETTINGS_MODULE=tests.realtime.echo_site``: the project's
settings, with a page at ``/echo/<name>/`` that shows the topic's ``said``
events through the generic browser client (``static/echo/echo-page.js``).
The project's URLs stay reachable (login, ``/api/me``, ``/healthz``).
"""

from __future__ import annotations

from pathlib import Path

from project.settings import *  # noqa: F403 - the project's settings, and below what differs

ROOT_URLCONF = "tests.realtime.echo_site_urls"
STATICFILES_DIRS = [Path(__file__).resolve().parent / "static"]


def __getattr__(name: str):
    """Build the ASGI app when Daphne asks for it: this module is the settings Django loads first."""
    if name != "application":
        raise AttributeError(name)
    from django.core.asgi import get_asgi_application

    http = get_asgi_application()  # sets Django up before any model is imported
    import realtime.asgi

    return realtime.asgi.application(http, "tests.realtime.echo_site_routes")
