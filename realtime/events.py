"""The event bus: the one place that knows group names and event shapes.

Views, consumers, the SSE stream, the admin and management commands publish
through :func:`publish`; each event is JSON-encoded once per publish and the
encoded text travels through the channel layer to every subscriber.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer, get_channel_layer

from .services import REDIS_ERRORS

logger = logging.getLogger(__name__)

# The layer message type that carries an encoded event to a subscriber
# (consumer handler: realtime_event).
DELIVER = "realtime.event"


def room_group(slug: str) -> str:
    """Return the channel-layer group of a room."""
    return f"room.{slug}"


def user_group(user_id: int) -> str:
    """Return the channel-layer group of every live connection of a user."""
    return f"user.{user_id}"


def session_group(session_key: str) -> str:
    """Return the group of the connections opened with one session."""
    # Hashed: session keys are credentials and must not sit in Redis key names.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def token_group(token_id: int) -> str:
    """Return the group of the connections opened with one API token."""
    return f"token.{token_id}"


# Control notices, handled by every connection (WebSocket and SSE) itself.
CLOSE = "realtime.close"  # {"code": 4401 | 4403}: end the connection now
REVALIDATE = "realtime.revalidate"  # check the credential again (password changed)


def encode(event: dict[str, Any]) -> str:
    """Return the wire text of an event (compact JSON, UTF-8 kept as is)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def user_public(user) -> dict[str, Any]:
    """Return the public view of a user: ``{"id": 1, "username": "alice"}``."""
    return {"id": user.pk, "username": user.get_username()}


def hello(*, user, room: str, last_id: int) -> dict[str, Any]:
    """Return the first event of every WebSocket and SSE stream."""
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
    """Return the ``attachment`` field of a message that carries a finished ``Upload``."""
    return {"name": upload.filename, "size": upload.size, "url": upload.file_url}


def upload_progress(*, upload_id: str, offset: int, size: int) -> dict[str, Any]:
    """Return the progress of a running upload, sent to its owner's connections."""
    return {"type": "upload_progress", "id": upload_id, "offset": offset, "size": size}


def presence(users: list[str]) -> dict[str, Any]:
    """Return the full presence event sent once after hello."""
    return {"type": "presence", "users": sorted(users)}


def presence_diff(*, joins: list[str], leaves: list[str]) -> dict[str, Any]:
    """Return a coalesced presence change."""
    return {"type": "presence_diff", "joins": sorted(joins), "leaves": sorted(leaves)}


def typing(username: str) -> dict[str, Any]:
    """Return the event telling the room that ``username`` is typing."""
    return {"type": "typing", "user": username}


def message_deleted(message_id: int) -> dict[str, Any]:
    """Return the event telling the room a message is gone."""
    return {"type": "message_deleted", "id": message_id}


def announcement(text: str) -> dict[str, Any]:
    """Return an announcement from the admin or ``manage.py announce``."""
    return {"type": "announcement", "text": text}


def pong() -> dict[str, Any]:
    """Return the answer to a client's ping."""
    return {"type": "pong"}


def error(code: str, detail: str) -> dict[str, Any]:
    """Return the error event sent for a bad frame (CONTRACT.md section 3)."""
    return {"type": "error", "code": code, "detail": detail}


def _delivery(event: dict[str, Any], exclude: str | None = None) -> dict[str, Any]:
    """Return the channel-layer message that carries ``event``, encoded once."""
    # "id" lets a subscriber skip a message it already sent by replay.
    message_id = event.get("id") if event["type"] == "message" else None
    # "event" lets SSE name the event without decoding the text again.
    return {
        "type": DELIVER,
        "text": encode(event),
        "event": event["type"],
        "id": message_id,
        "exclude": exclude,
    }


async def publish(room: str, event: dict[str, Any], *, exclude: str | None = None) -> None:
    """Send ``event`` to every subscriber of ``room``, except the channel ``exclude``."""
    message = _delivery(event, exclude)
    for attempt in (1, 2):
        try:
            await get_channel_layer().group_send(room_group(room), message)
            return
        except REDIS_ERRORS as exc:
            if attempt == 1:
                # Right after a Redis restart the pool may hand out a dead
                # connection once; subscribers that reconnected would miss
                # the event for good. Retry once (replayed ids are skipped).
                continue
            # The layer is down (Redis restarting). Messages are stored before
            # they are published, so clients recover them by replay on reconnect.
            logger.error(
                "channel layer unavailable; %s event to %s not delivered live: %s", event["type"], room, exc
            )


async def publish_to_user(user_id: int, event: dict[str, Any]) -> None:
    """Send ``event`` to every live connection of one user, in any room."""
    await get_channel_layer().group_send(user_group(user_id), _delivery(event))


async def notify(group: str, notice: str, **fields: Any) -> None:
    """Send a control notice (CLOSE, REVALIDATE) to every connection in ``group``."""
    await get_channel_layer().group_send(group, {"type": notice, **fields})


def notify_sync(group: str, notice: str, **fields: Any) -> None:
    """Send a control notice from synchronous code (signals)."""
    async_to_sync(notify)(group, notice, **fields)


def publish_sync(room: str, event: dict[str, Any]) -> None:
    """Publish from synchronous code (admin actions, signals, commands)."""
    async_to_sync(publish)(room, event)


async def resubscribe(layer, channel: str, current: list[str], wanted: list[str]) -> list[str]:
    """Make ``channel`` a member of exactly the groups ``wanted`` (it is in ``current``); return them."""
    for group in set(current) - set(wanted):
        await layer.group_discard(group, channel)
    for group in set(wanted) - set(current):
        await layer.group_add(group, channel)
    return wanted


def layer_is_process_local() -> bool:
    """Return whether the channel layer reaches only this process."""
    return isinstance(get_channel_layer(), InMemoryChannelLayer)
