"""The chat's event shapes (the wire contract, section 3): the one place that builds them."""

from __future__ import annotations

from typing import Any

from realtime import user_public


def hello(*, user, room: str, last_id: int) -> dict[str, Any]:
    """Return the first event of every room WebSocket and SSE stream."""
    return {"type": "hello", "user": user_public(user), "room": room, "last_id": last_id}


def message(msg) -> dict[str, Any]:
    """Return the message event of a stored ``Message`` (room, user and attachment loaded)."""
    event = {
        "type": "message",
        "id": msg.pk,
        "room": msg.room.slug,
        "user": msg.user.get_username(),
        "text": msg.text,
        "created": msg.created.isoformat(),
    }
    if msg.attachment_id is not None:
        event["attachment"] = attachment(msg.attachment)
    return event


def attachment(upload) -> dict[str, Any]:
    """Return the ``attachment`` field of a message that carries a finished upload."""
    return {"name": upload.filename, "size": upload.size, "url": upload.file_url}


def typing(username: str) -> dict[str, Any]:
    """Return the event telling the room that ``username`` is typing."""
    return {"type": "typing", "user": username}


def message_deleted(message_id: int) -> dict[str, Any]:
    """Return the event telling the room a message is gone."""
    return {"type": "message_deleted", "id": message_id}


def announcement(text: str) -> dict[str, Any]:
    """Return an announcement from the admin or ``manage.py announce``."""
    return {"type": "announcement", "text": text}
