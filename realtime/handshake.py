"""Run Django's own ``MIDDLEWARE`` on every WebSocket handshake.

A WebSocket starts as an HTTP GET, so the handshake scope is turned into a
Django request and sent down the same middleware chain as a view's request.
The innermost step resolves the WebSocket route and applies view middleware
(``process_view``), so ``LoginRequiredMiddleware`` and friends see the
consumer as the view. A response from any middleware refuses the handshake
before accept (HTTP 403); otherwise the consumer runs with the request's
user and session in its scope.

Private framework API is fenced in this module: ``BaseHandler`` internals
(``load_middleware``, ``_get_response_async``, ``_view_middleware``) and
``CsrfViewMiddleware._origin_verified``, read from Django 5.2.
tests/test_handshake.py fails loudly if an upgrade changes them.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import Resolver404, resolve

logger = logging.getLogger(__name__)

# Scope keys this module adds, as Channels' own auth middleware would:
#   scope["user"]      the user the middleware stack resolved (never lazy)
#   scope["session"]   the request's session (a loaded SessionStore)
#   scope["url_route"] {"args": ..., "kwargs": ...} of the matched route
#   scope["request"]   the Django request the stack saw (headers, META, auth)


class _Allowed(HttpResponse):
    """Marker response: the handshake went through every middleware."""


class HandshakeHandler(BaseHandler):
    """Django's middleware chain, ending in WebSocket routing instead of a view."""

    def __init__(self, urlconf: str) -> None:
        self.urlconf = urlconf
        self.load_middleware(is_async=True)

    async def _get_response_async(self, request: HttpRequest) -> HttpResponse:
        """Called innermost: resolve the route, apply view middleware, allow."""
        try:
            match = resolve(request.path_info, urlconf=self.urlconf)
        except Resolver404:
            return HttpResponse(status=404)
        request.resolver_match = match
        for process_view in self._view_middleware:
            response = await process_view(request, match.func, match.args, match.kwargs)
            if response:
                return response
        return _Allowed()


def origin_allowed(request: HttpRequest) -> bool:
    """Return whether the handshake's Origin is same-host or in CSRF_TRUSTED_ORIGINS."""
    if "HTTP_ORIGIN" not in request.META:
        # Browsers always send Origin on WebSockets; scripts without one carry
        # no ambient browser credentials worth hijacking.
        return True
    # A fresh instance per handshake: the allowed origins are cached per
    # instance, and settings may change (tests, reloads).
    return CsrfViewMiddleware(_no_response)._origin_verified(request)


def _no_response(request: HttpRequest) -> None:
    """Stand-in get_response: only CsrfViewMiddleware's origin check is used."""


def http_scope_for(scope: dict[str, Any]) -> dict[str, Any]:
    """Return the HTTP GET scope that a WebSocket handshake scope stands for."""
    http_scope = dict(scope)
    http_scope["type"] = "http"
    http_scope["method"] = "GET"
    # Origins of wss:// pages read https://, so the request must too.
    http_scope["scheme"] = "https" if scope.get("scheme") == "wss" else "http"
    return http_scope


class DjangoMiddlewareWebSocketRouter:
    """ASGI app: run ``MIDDLEWARE`` on each handshake, then the routed consumer."""

    def __init__(self, urlconf: str) -> None:
        self.handler = HandshakeHandler(urlconf)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"{type(self).__name__} only serves WebSockets, not {scope['type']}")
        request = ASGIRequest(http_scope_for(scope), io.BytesIO())
        # Lets a middleware tell a handshake from a view request (the bearer
        # token middleware accepts ?access_token= only here).
        request.is_websocket = True
        response = await self.handler.get_response_async(request)
        if not isinstance(response, _Allowed) or not origin_allowed(request):
            await self.refuse(receive, send, request, response)
            return
        match = request.resolver_match
        scope = dict(scope)
        scope["request"] = request
        scope["user"] = await request.auser() if hasattr(request, "auser") else request.user
        scope["session"] = getattr(request, "session", None)
        if scope["session"] is not None:
            # Load now, off the event loop, so consumers never hit the DB lazily.
            await sync_to_async(_load_session)(scope["session"])
        scope["url_route"] = {"args": match.args, "kwargs": match.kwargs}
        await match.func(scope, receive, send)

    @staticmethod
    async def refuse(receive, send, request: HttpRequest, response: HttpResponse) -> None:
        """Close the handshake before accept: the server answers HTTP 403."""
        logger.info(
            "WebSocket handshake refused: %s (middleware answered %s)",
            request.path,
            response.status_code if not isinstance(response, _Allowed) else "origin",
        )
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})


def _load_session(session) -> None:
    """Read the session's data from its store once (the first access loads it)."""
    session.keys()
