"""The chat's HTTP API (the wire contract, section 2) and its pages."""

from __future__ import annotations

from urllib.parse import urlencode

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from realtime import ClientError, api, json_body, online_counts, parse_after, topic_users

from . import events, service
from .models import Room
from .topic import RoomTopic

# Rooms per lobby page.
LOBBY_PAGE = 50


async def _room_rows(*, page: int, limit: int) -> tuple[list[dict], bool]:
    """Return one page of rooms with how many users are online in each, and whether more follow.

    Rooms with someone online come first (most online first), then the
    others by slug; a room may be online without a row (deleted while in use).
    """
    counts = await online_counts(RoomTopic.kind)
    online = sorted((slug for slug, n in counts.items() if n), key=lambda slug: (-counts[slug], slug))
    offset = (page - 1) * limit
    shown = online[offset : offset + limit]
    rest = limit - len(shown)
    # One more than fits tells whether a next page exists.
    names, others = await service.rooms_listed(
        online=online, named=shown, offset=max(0, offset - len(online)), count=rest + 1
    )
    listed = [(slug, names.get(slug, "")) for slug in shown] + others[:rest]
    rows = [
        {"slug": slug, "name": Room(slug=slug, name=name).display_name, "online": counts.get(slug, 0)}
        for slug, name in listed
    ]
    return rows, offset + limit < len(online) or len(others) > rest


@api("GET")
async def rooms(request: HttpRequest, user) -> JsonResponse:
    """List a page of rooms with how many users are online in each; ``next`` is the next page's URL."""
    page = service.parse_page(request.GET.get("page"))
    limit = service.parse_limit(request.GET.get("limit"))
    rows, more = await _room_rows(page=page, limit=limit)
    following = f"{request.path}?{urlencode({'page': page + 1, 'limit': limit})}" if more else None
    return JsonResponse({"rooms": rows, "next": following})


@api("GET", "POST", topic=RoomTopic)
async def room_messages(request: HttpRequest, user, topic: RoomTopic) -> JsonResponse:
    """List a room's messages (GET) or post one (POST)."""
    if request.method == "POST":
        text = json_body(request).get("text")
        service.clean_text(text)  # an invalid message creates no room: checked before the allowance
        await service.require_room_creation_allowed(user=user, slug=topic.slug)
        msg = await service.message_post(user=user, topic=topic, text=text)
        return JsonResponse(events.message(msg), status=201)
    after = parse_after(request.GET.get("after"))
    limit = service.parse_limit(request.GET.get("limit"))
    return JsonResponse({"messages": await service.messages_list(slug=topic.slug, after=after, limit=limit)})


@api("GET", topic=RoomTopic)
async def room_presence(request: HttpRequest, user, topic: RoomTopic) -> JsonResponse:
    """Return the users with a live socket or stream in the room."""
    return JsonResponse({"users": await topic_users(topic.group)})


async def render_page(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """Render a template off the event loop (context processors read the user lazily)."""
    return await sync_to_async(render)(request, template, context)


@login_required
async def lobby(request: HttpRequest) -> HttpResponse:
    """Render the lobby: a page of rooms (``?page=``) and who is online."""
    try:
        page = service.parse_page(request.GET.get("page"))
    except ClientError:
        page = 1
    users = await topic_users(RoomTopic("lobby").group)
    rows, more = await _room_rows(page=page, limit=LOBBY_PAGE)
    context = {
        "rooms": rows,
        "lobby_users": users,
        "page": page,
        "previous_page": page - 1 if page > 1 else None,
        "next_page": page + 1 if more else None,
        "page_size": LOBBY_PAGE,
    }
    return await render_page(request, "chat/lobby.html", context)


@login_required
async def room(request: HttpRequest, slug: str) -> HttpResponse:
    """Render a room with its recent history; the page's script then goes live."""
    user = await request.auser()
    history = await service.messages_list(slug=slug, after=None, limit=50)
    return await render_page(
        request,
        "chat/room.html",
        {
            "slug": slug,
            "room_name": Room(slug=slug).display_name,
            "history": history,
            "client_config": {"room": slug, "username": user.get_username(), "history": history},
        },
    )
