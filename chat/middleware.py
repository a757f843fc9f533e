"""How many rooms a user may create by connecting: one middleware for the WebSocket and the SSE stream.

A room is created by the first connection or message naming it. Before a
WebSocket handshake or an SSE stream to a room that does not exist yet,
this asks whether the user may create one more
(REALTIME_ROOMS_PER_USER_PER_HOUR, chat.service.room_creation_allowed):
beyond it the handshake is refused before accept (403) and the stream with
403. Existing rooms are never affected. It sits in ``settings.MIDDLEWARE``,
so the handshake bridge (realtime.handshake) runs it on WebSockets as on
views: the room is opened after accept, too late to refuse. A message
posted over HTTP is checked by its view once it is valid (chat.views), so
an invalid post creates nothing and uses up nothing.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse

from realtime import json_error

from . import service
from .topic import RoomTopic

# The HTTP route (chat/urls.py) that creates the room it names when it opens: the SSE stream.
_CREATING_ROUTES = {"sse-room": ("GET",)}


def creating_room(request: HttpRequest, view_func: Any, kwargs: dict) -> str | None:
    """Return the slug of the room the request would create if it were new, else None."""
    slug = kwargs.get("slug")
    if not isinstance(slug, str):
        return None
    if getattr(request, "is_websocket", False):
        initkwargs = getattr(view_func, "consumer_initkwargs", None) or {}
        return slug if initkwargs.get("topic") is RoomTopic else None
    match = getattr(request, "resolver_match", None)
    methods = _CREATING_ROUTES.get(match.url_name if match else None, ())
    return slug if request.method in methods else None


def refusal() -> HttpResponse:
    """Return the answer to one room too many: 403 to a stream or a handshake."""
    limit = settings.REALTIME_ROOMS_PER_USER_PER_HOUR
    return json_error("forbidden", service.ROOM_LIMIT_DETAIL.format(limit), 403)


class RoomCreationLimitMiddleware:
    """Refuse what would create a room beyond the user's hourly allowance (see the module docstring).

    ``process_view`` is async in an async chain (views: no thread hop for
    the many requests it ignores) and sync in the handshake's sync chain,
    which runs on the realtime DB thread.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)
            self.process_view = self._aprocess_view
        else:
            self.process_view = self._process_view

    def __call__(self, request: HttpRequest):
        return self.get_response(request)

    def _process_view(self, request, view_func, view_args, view_kwargs) -> HttpResponse | None:
        slug = creating_room(request, view_func, view_kwargs)
        user = getattr(request, "user", None)
        if slug is None or user is None or not user.is_authenticated:
            return None  # not creating, or anonymous: the topic refuses without identity
        if service.room_creation_allowed_sync(user=user, slug=slug):
            return None
        return refusal()

    async def _aprocess_view(self, request, view_func, view_args, view_kwargs) -> HttpResponse | None:
        slug = creating_room(request, view_func, view_kwargs)
        if slug is None:
            return None
        user = await request.auser()
        if not user.is_authenticated:
            return None
        if await service.room_creation_allowed(user=user, slug=slug):
            return None
        return refusal()
