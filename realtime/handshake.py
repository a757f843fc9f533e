"""Run Django's own ``MIDDLEWARE`` on every WebSocket handshake.

A WebSocket starts as an HTTP GET, so the handshake scope is turned into a
Django request and sent down the same middleware chain as a view's request.
The innermost step resolves the WebSocket route and applies view middleware
(``process_view``), so ``LoginRequiredMiddleware`` and friends see the
consumer as the view. A response from any middleware refuses the handshake
before accept (HTTP 403); otherwise the consumer runs with the request's
user and session in its scope.

The chain is built synchronously and a handshake runs it in ONE hop to the
realtime DB thread (realtime.db), together with the origin check and the
loads of the user and the session. Django's async chain would hop to a thread and back for every
``MiddlewareMixin`` hook and cache or session access, many hops per
handshake with the default stack (counted: bench/README.md, Figures
formerly quoted in code); middleware that is async-only still works,
adapted by Django.

Private framework API is fenced in this module: ``BaseHandler`` internals
(``load_middleware``, ``_get_response``, ``_view_middleware``),
``LazyObject._wrapped``/``_setup`` and ``CsrfViewMiddleware._origin_verified``,
read from Django 5.2, 6.0 and 6.1 (unchanged between them).
tests/realtime/test_handshake.py fails loudly on any other version, or if they change.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import BadRequest, SuspiciousOperation
from django.core.handlers.asgi import ASGIRequest
from django.core.handlers.base import BaseHandler
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import Resolver404, resolve
from django.utils.functional import LazyObject, empty

from . import metrics
from .db import db_call
from .middleware import DATABASE_UNAVAILABLE

logger = logging.getLogger(__name__)

# Scope keys this module adds, as Channels' own auth middleware would:
#   scope["user"]      the user the middleware stack resolved (never lazy)
#   scope["session"]   the request's session (a loaded SessionStore)
#   scope["url_route"] {"args": ..., "kwargs": ...} of the matched route
#   scope["request"]   the Django request the stack saw (headers, META, auth);
#                      a consumer that keeps its socket open should pop it
#                      once read, so an idle socket does not hold it


class _Allowed(HttpResponse):
    """Marker response: the handshake went through every middleware."""


class _ForeignOrigin(HttpResponseForbidden):
    """Marker response: the middleware allowed it, but the Origin is cross-site."""


class HandshakeHandler(BaseHandler):
    """Django's middleware chain, ending in WebSocket routing instead of a view."""

    def __init__(self, urlconf: str) -> None:
        self.urlconf = urlconf
        self.load_middleware(is_async=False)

    def _get_response(self, request: HttpRequest) -> HttpResponse:
        """Called innermost: resolve the route, apply view middleware, allow."""
        try:
            match = resolve(request.path_info, urlconf=self.urlconf)
        except Resolver404:
            return HttpResponse(status=404)
        request.resolver_match = match
        for process_view in self._view_middleware:
            response = process_view(request, match.func, match.args, match.kwargs)
            if response:
                return response
        return _Allowed()

    def handshake(self, request: HttpRequest) -> tuple[HttpResponse | None, Any]:
        """Run the stack, then load the user and session; return (refusal or None, user).

        Runs in the realtime DB thread (realtime.db), in one hop.
        """
        response = self.get_response(request)
        if not isinstance(response, _Allowed):
            return response, None
        if not origin_allowed(request):
            return _ForeignOrigin(), None
        user = _unwrapped(getattr(request, "user", None)) or AnonymousUser()
        session = getattr(request, "session", None)
        if session is not None:
            # Load now, in this thread, so consumers never hit the DB lazily.
            session.keys()
        return None, user


def _unwrapped(user: Any) -> Any:
    """Return the object behind a lazy user (AuthenticationMiddleware's), loading it."""
    if isinstance(user, LazyObject):
        if user._wrapped is empty:
            user._setup()
        return user._wrapped
    return user


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
        self._handshake = db_call(self.handler.handshake)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "websocket":
            raise ValueError(f"{type(self).__name__} only serves WebSockets, not {scope['type']}")
        consumer, scope = await self.admit(scope, receive, send)
        if consumer is not None:
            # Awaited for the life of the socket: nothing of the handshake is held here.
            await consumer(scope, receive, send)

    async def admit(self, scope, receive, send) -> tuple[Any, dict | None]:
        """Run the handshake; return the consumer and its scope, or (None, None) once refused."""
        request = ASGIRequest(http_scope_for(scope), io.BytesIO())
        # Lets a middleware tell a handshake from a view request (the bearer
        # token middleware accepts ?access_token= only here).
        request.is_websocket = True
        try:
            # Parsed here, once: a query string Django refuses (over
            # DATA_UPLOAD_MAX_NUMBER_FIELDS parameters) refuses the handshake.
            request.GET  # noqa: B018
        except (SuspiciousOperation, BadRequest) as exc:
            await self.refuse(receive, send, request, HttpResponseBadRequest(), why=str(exc))
            return None, None
        try:
            refusal, user = await self._handshake(request)
        except DATABASE_UNAVAILABLE as exc:
            # The database is down or its pool exhausted: refused (403), the client retries.
            logger.warning("database unavailable for a WebSocket handshake to %s: %s", request.path, exc)
            metrics.database_unavailable("websocket")
            await self.refuse(receive, send, request, HttpResponse(status=503), why="database unavailable")
            return None, None
        if refusal is not None:
            await self.refuse(receive, send, request, refusal)
            return None, None
        match = request.resolver_match
        scope = dict(scope)
        scope["request"] = request
        scope["user"] = user
        scope["session"] = getattr(request, "session", None)
        scope["url_route"] = {"args": match.args, "kwargs": match.kwargs}
        return match.func, scope

    @staticmethod
    async def refuse(receive, send, request: HttpRequest, response: HttpResponse, why: str = "") -> None:
        """Close the handshake before accept: the server answers HTTP 403."""
        if isinstance(response, _ForeignOrigin):
            why = "origin"
        why = why or f"middleware said {response.status_code}"
        metrics.handshake_refused(response.status_code, origin=isinstance(response, _ForeignOrigin))
        logger.info("WebSocket handshake refused: %s (%s)", request.path, why)
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": 1008})
