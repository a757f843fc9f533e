"""The chat's URLs: pages, the JSON API, the SSE stream of a room, and its admin pages' earlier URLs."""

from django.contrib import admin
from django.urls import include, path, register_converter

from realtime import stream_view

from . import views
from .models import SLUG_PATTERN, Message, Room
from .topic import RoomTopic


class RoomSlugConverter:
    """A room slug: ``[a-z0-9-]{1,50}``."""

    regex = SLUG_PATTERN

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(RoomSlugConverter, "room")

urlpatterns = [
    path("", views.lobby, name="lobby"),
    path("rooms/<room:slug>/", views.room, name="room"),
    path("api/rooms", views.rooms, name="api-rooms"),
    path("api/rooms/<room:slug>/messages", views.room_messages, name="api-room-messages"),
    path("api/rooms/<room:slug>/presence", views.room_presence, name="api-room-presence"),
    path("sse/rooms/<room:slug>/", stream_view(RoomTopic), name="sse-room"),
    # Rooms and messages were the core's models: the wire contract keeps their admin
    # pages at the earlier URLs (/admin/realtime/message/...) as well.
    *[
        path(f"admin/realtime/{model._meta.model_name}/", include(admin.site.get_model_admin(model).urls))
        for model in (Room, Message)
    ],
]
