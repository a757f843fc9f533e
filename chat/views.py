"""The chat's HTTP API (the wire contract, section 2) and its pages."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from realtime import api, json_body, online_counts, parse_after, topic_users

from . import events, service
from .models import Room
from .topic import RoomTopic


async def _room_rows() -> list[dict]:
    """Return every room, with how many users are online in each (rooms live only in memory too)."""
    online = await online_counts(RoomTopic.kind)
    listed = [r async for r in Room.objects.all()]
    known = {r.slug for r in listed}
    listed += [Room(slug=slug) for slug in sorted(online) if slug not in known and online[slug]]
    return [{"slug": r.slug, "name": r.display_name, "online": online.get(r.slug, 0)} for r in listed]


@api("GET")
async def rooms(request: HttpRequest, user) -> JsonResponse:
    """List the rooms with how many users are online in each."""
    return JsonResponse({"rooms": await _room_rows()})


@api("GET", "POST", topic=RoomTopic)
async def room_messages(request: HttpRequest, user, topic: RoomTopic) -> JsonResponse:
    """List a room's messages (GET) or post one (POST)."""
    if request.method == "POST":
        msg = await service.message_post(user=user, topic=topic, text=json_body(request).get("text"))
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
    """Render the lobby: the rooms and who is online."""
    users = await topic_users(RoomTopic("lobby").group)
    return await render_page(request, "chat/lobby.html", {"rooms": await _room_rows(), "lobby_users": users})


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
