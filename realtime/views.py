"""HTTP views: the JSON API (CONTRACT.md section 2) and the demo pages."""

from __future__ import annotations

import functools
import json

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.csrf import csrf_failure as django_csrf_failure
from django.views.decorators.http import require_GET

from . import chat, events, presence
from .chat import ClientError
from .models import ApiToken, Room


def json_error(code: str, detail: str, status: int) -> JsonResponse:
    """Return the API's error body ``{"error": code, "detail": detail}``."""
    return JsonResponse({"error": code, "detail": detail}, status=status)


def api(*methods: str, identity: bool = True):
    """Make an async view an API endpoint: allowed methods, identity, JSON errors."""

    def decorate(view):
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = json_error("method_not_allowed", f"Use {' or '.join(methods)}.", 405)
                response["Allow"] = ", ".join(methods)
                return response
            user = await request.auser()
            if identity and not (user.is_authenticated and user.is_active):
                return json_error("unauthorized", "Log in or send 'Authorization: Bearer <token>'.", 401)
            try:
                return await view(request, user, *args, **kwargs)
            except ClientError as exc:
                return json_error(exc.code, exc.detail, exc.http_status)

        return wrapper

    return decorate


def json_body(request: HttpRequest) -> dict:
    """Return the request's JSON object body, or raise ClientError."""
    too_large = ClientError("too_large", f"Bodies are limited to {settings.REALTIME_MAX_FRAME} bytes.")
    try:
        raw = request.body
    except RequestDataTooBig:  # over DATA_UPLOAD_MAX_MEMORY_SIZE: Django would answer 400
        raise too_large from None
    if len(raw) > settings.REALTIME_MAX_FRAME:
        raise too_large
    try:
        body = json.loads(raw or b"null")
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ClientError("bad_json", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ClientError("bad_json", "The body must be a JSON object.")
    return body


@api("GET")
async def me(request: HttpRequest, user) -> JsonResponse:
    """Return who the caller is."""
    return JsonResponse(events.user_public(user))


@api("POST")
async def tokens(request: HttpRequest, user) -> JsonResponse:
    """Issue a personal API token for the caller; the raw value is shown only here."""
    name = request.POST.get("name", "") if request.content_type != "application/json" else ""
    _, raw = await ApiToken.aissue(user, name=name[:100])
    return JsonResponse({"token": raw}, status=201)


@api("GET")
async def rooms(request: HttpRequest, user) -> JsonResponse:
    """List the rooms with how many users are online in each."""
    online = await presence.online_counts()
    listed = [r async for r in Room.objects.all()]
    known = {r.slug for r in listed}
    listed += [Room(slug=slug) for slug in sorted(online) if slug not in known and online[slug]]
    return JsonResponse(
        {"rooms": [{"slug": r.slug, "name": r.display_name, "online": online.get(r.slug, 0)} for r in listed]}
    )


@api("GET", "POST")
async def room_messages(request: HttpRequest, user, slug: str) -> JsonResponse:
    """List a room's messages (GET) or post one (POST)."""
    if request.method == "POST":
        msg = await chat.message_post(user=user, slug=slug, text=json_body(request).get("text"))
        return JsonResponse(events.message(msg), status=201)
    after = chat.parse_after(request.GET.get("after"))
    limit = chat.parse_limit(request.GET.get("limit"))
    return JsonResponse({"messages": await chat.messages_list(slug=slug, after=after, limit=limit)})


@api("GET")
async def room_presence(request: HttpRequest, user, slug: str) -> JsonResponse:
    """Return the users with a live socket or stream in the room."""
    return JsonResponse({"users": await presence.room_users(slug)})


@require_GET
async def healthz(request: HttpRequest) -> JsonResponse:
    """Report liveness, the channel layer in use and this process's live connections."""
    layer = get_channel_layer()
    return JsonResponse(
        {
            "status": "ok",
            "channel_layer": f"{type(layer).__module__}.{type(layer).__qualname__}",
            "connections": presence.local_connections(),
        }
    )


async def render_page(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Render a template off the event loop (context processors read the user lazily)."""
    return await sync_to_async(render)(request, template, context)


@login_required
async def lobby(request: HttpRequest) -> HttpResponse:
    """Render the lobby: the rooms and who is online."""
    online = await presence.online_counts()
    listed = [r async for r in Room.objects.all()]
    room_rows = [{"slug": r.slug, "name": r.display_name, "online": online.get(r.slug, 0)} for r in listed]
    users = await presence.room_users("lobby")
    return await render_page(request, "realtime/lobby.html", {"rooms": room_rows, "lobby_users": users})


@login_required
async def room(request: HttpRequest, slug: str) -> HttpResponse:
    """Render a room with its recent history; the page's script then goes live."""
    user = await request.auser()
    history = await chat.messages_list(slug=slug, after=None, limit=50)
    return await render_page(
        request,
        "realtime/room.html",
        {
            "slug": slug,
            "room_name": Room(slug=slug).display_name,
            "history": history,
            "client_config": {"room": slug, "username": user.get_username(), "history": history},
        },
    )


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """Answer a CSRF failure: JSON under /api/, Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error("forbidden", f"CSRF check failed: {reason}", 403)
    return django_csrf_failure(request, reason)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Answer an unknown URL: JSON under /api/, a plain page elsewhere."""
    if request.path.startswith("/api/"):
        return json_error("not_found", "No such endpoint.", 404)
    return HttpResponse("Not found.", status=404, content_type="text/plain")


def server_error(request: HttpRequest) -> HttpResponse:
    """Answer an unexpected failure: JSON under /api/."""
    if request.path.startswith("/api/"):
        return json_error("server_error", "Unexpected server error.", 500)
    return HttpResponse("Server error.", status=500, content_type="text/plain")
