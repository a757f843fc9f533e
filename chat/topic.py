"""The chat's topic: a room. Who may join it, what a client gets first, what its frames do."""

from __future__ import annotations

import re
from typing import Any

from realtime import ClientError, Connection, Opening, Topic, publish

from . import events, service
from .models import SLUG_PATTERN

SLUG_RE = re.compile(rf"{SLUG_PATTERN}\Z")


class RoomTopic(Topic):
    """A chat room: ``room.<slug>``; messages replay after an id; presence tracked."""

    kind = "room"
    presence = True

    def __init__(self, slug: str) -> None:
        super().__init__(slug)

    @property
    def slug(self) -> str:
        """Return the room's slug."""
        return self.key

    def can_join(self, user) -> bool:
        """Return whether ``user`` may read and write the room; the one access rule."""
        return super().can_join(user) and bool(SLUG_RE.match(self.slug))

    async def admit(self, user) -> None:
        """Before accept: the access rule, then a new room only within the user's hourly allowance."""
        await super().admit(user)
        if not await service.room_creation_allowed(user=user, slug=self.slug):
            raise ClientError("forbidden", service.room_limit_detail())

    async def open(self, user, after: int | None) -> Opening:
        """Create the room on first use; hello with its newest id, then replay after ``after``."""
        last_id = await service.room_open(slug=self.slug)
        return Opening(
            hello=events.hello(user=user, room=self.slug, last_id=last_id),
            floor=last_id if after is None else after,
            catch_up=() if after is None else service.replay(slug=self.slug, after=after),
        )

    def event_id(self, event: dict[str, Any]) -> int | None:
        """Return a message event's id: replay and live delivery meet on it."""
        return event["id"] if event["type"] == "message" else None

    async def frame_message(self, connection: Connection, frame: dict[str, Any]) -> None:
        """``{"type": "message", "text": ...}``: store, then broadcast to the room."""
        await service.message_post(user=connection.user, topic=self, text=frame.get("text"))

    async def frame_typing(self, connection: Connection, frame: dict[str, Any]) -> None:
        """``{"type": "typing"}``: tell the others in the room."""
        if not await service.typing_allowed(user=connection.user, topic=self):
            return  # dropped silently: a typing indicator is a hint, not a message
        await publish(self, events.typing(connection.user.get_username()), exclude=connection.channel)
