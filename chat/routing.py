"""The chat's WebSocket route, resolved after the middleware stack ran (realtime.handshake)."""

from django.urls import re_path

from realtime import TopicConsumer

from .models import SLUG_PATTERN
from .topic import RoomTopic

websocket_urlpatterns = [
    re_path(rf"^ws/rooms/(?P<slug>{SLUG_PATTERN})/$", TopicConsumer.as_asgi(topic=RoomTopic)),
]
