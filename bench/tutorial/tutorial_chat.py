"""The tutorial's async ChatConsumer (part 3), speaking the project's frames.

Changes from the tutorial, all so the shared load client works: the route is
``ws/rooms/<name>/``, a ``hello`` is sent on connect, and frames are
``{"type": "message", "text": ...}`` both ways. Kept from the tutorial: one
``group_send`` per message and one ``json.dumps`` per recipient in
``chat_message``; nothing is stored.
"""

import json

from channels.generic.websocket import AsyncWebsocketConsumer
from django.urls import re_path


class ChatConsumer(AsyncWebsocketConsumer):
    """One socket in a chat room."""

    async def connect(self):
        """Join the room group and greet the client."""
        self.room_name = self.scope["url_route"]["kwargs"]["room_name"]
        self.room_group_name = f"chat_{self.room_name}"
        await self.channel_layer.group_add(self.room_group_name, self.channel_name)
        await self.accept()
        user = self.scope["user"]
        await self.send(
            text_data=json.dumps(
                {
                    "type": "hello",
                    "user": {"id": user.pk, "username": user.get_username()},
                    "room": self.room_name,
                }
            )
        )

    async def disconnect(self, close_code):
        """Leave the room group."""
        await self.channel_layer.group_discard(self.room_group_name, self.channel_name)

    async def receive(self, text_data):
        """Send a client's message to the room group."""
        text_data_json = json.loads(text_data)
        message = text_data_json["text"]
        await self.channel_layer.group_send(
            self.room_group_name,
            {"type": "chat.message", "message": message, "user": self.scope["user"].get_username()},
        )

    async def chat_message(self, event):
        """Receive a message from the room group; encode and send it to this socket."""
        await self.send(
            text_data=json.dumps({"type": "message", "user": event["user"], "text": event["message"]})
        )


websocket_urlpatterns = [re_path(r"ws/rooms/(?P<room_name>[\w-]+)/$", ChatConsumer.as_asgi())]
