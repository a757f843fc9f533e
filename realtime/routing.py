"""WebSocket routes, resolved by realtime.handshake after the middleware stack ran."""

from django.urls import re_path

from .consumers import RoomConsumer
from .models import SLUG_PATTERN

urlpatterns = [
    re_path(rf"^ws/rooms/(?P<slug>{SLUG_PATTERN})/$", RoomConsumer.as_asgi()),
]
