"""The project's ASGI application: Django for HTTP and SSE, the handshake bridge for WebSockets.

:class:`ConnectionsReleased` wraps both. It marks the process as serving
(realtime.bus) and starts the background jobs on the first call
(realtime.background), and it is the backstop of
the connection lifecycle: the driver of a live connection opened while
serving an HTTP request (an SSE stream) is registered with :func:`hold`,
and cancelled when the ASGI call ends, however it ends, so its ``finally``
gives everything back. Django drops a response whose request was cut
during the middleware's post-processing without closing it, and a stream
body that never started has no ``finally`` to run.
"""

from __future__ import annotations

from typing import Any

from channels.routing import ProtocolTypeRouter
from django.http import HttpRequest

from . import background, bus
from .handshake import DjangoMiddlewareWebSocketRouter

# Scope key this module adds: the connection drivers to cancel when the HTTP call ends.
HELD = "realtime.held"


def hold(request: HttpRequest, driver: Any) -> None:
    """Cancel ``driver`` (a connection's task) when the ASGI call serving ``request`` ends."""
    held = request.scope.get(HELD) if hasattr(request, "scope") else None
    if held is not None:
        held.append(driver)


class ConnectionsReleased:
    """ASGI middleware: background jobs started, and held connection drivers ended on every exit."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if not bus.serving:
            bus.mark_serving()  # from now on this process's publishes stay in it (memory bus)
        background.ensure_started()
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope = dict(scope)
        held: list = []
        scope[HELD] = held
        try:
            await self.app(scope, receive, send)
        finally:
            for driver in held:
                driver.cancel()


def application(http_app, websocket_urlconf: str) -> ConnectionsReleased:
    """Return the ASGI app: ``http_app`` (Django's) and WebSockets routed by ``websocket_urlconf``.

    A request without a credential may not send a large body (realtime.bodylimit).
    """
    from .bodylimit import AnonymousBodyLimit

    return ConnectionsReleased(
        ProtocolTypeRouter(
            {
                "http": AnonymousBodyLimit(http_app),
                "websocket": DjangoMiddlewareWebSocketRouter(websocket_urlconf),
            }
        )
    )
