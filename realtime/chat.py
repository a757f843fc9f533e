"""Chat business rules, shared by the WebSocket consumer and the HTTP API."""

from __future__ import annotations

import asyncio
import re
from collections import defaultdict
from collections.abc import AsyncIterator

from django.conf import settings

from . import events, ratelimit
from .models import SLUG_PATTERN, Message, Room

SLUG_RE = re.compile(rf"{SLUG_PATTERN}\Z")

# Status of each error code over HTTP (CONTRACT.md section 2).
HTTP_STATUS = {
    "bad_json": 400,
    "unknown_type": 400,
    "invalid": 400,
    "too_large": 413,
    "rate_limited": 429,
    "binary_unsupported": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
}

# Store-then-publish under a per-room lock, so this process broadcasts a
# room's messages in id order (a client resuming from its last id then
# cannot skip a message that was stored earlier but broadcast later).
_room_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)


class ClientError(Exception):
    """A client's mistake: sent as an error event (WebSocket) or JSON error (HTTP)."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    @property
    def http_status(self) -> int:
        """Return the HTTP status this error answers with."""
        return HTTP_STATUS.get(self.code, 400)


def can_join(user, slug: str) -> bool:
    """Return whether ``user`` may read and write the room ``slug``; the one access rule."""
    return bool(user and user.is_authenticated and user.is_active and SLUG_RE.match(slug))


def clean_text(text: object) -> str:
    """Return the trimmed message text, or raise ClientError if it breaks the rules."""
    if not isinstance(text, str):
        raise ClientError("invalid", "'text' must be a string.")
    text = text.strip()
    if not text:
        raise ClientError("invalid", "'text' must not be empty.")
    if len(text) > settings.REALTIME_MAX_TEXT:
        raise ClientError("too_large", f"'text' is over {settings.REALTIME_MAX_TEXT} characters.")
    return text


async def room_get_or_create(*, slug: str) -> Room:
    """Return the room ``slug``, creating it on first use."""
    room, _ = await Room.objects.aget_or_create(slug=slug)
    return room


async def room_last_id(*, slug: str) -> int:
    """Return the id of the room's newest message, 0 when it has none."""
    last = await Message.objects.filter(room__slug=slug).order_by("-id").values_list("id", flat=True).afirst()
    return last or 0


async def message_post(*, user, slug: str, text: object) -> Message:
    """Validate, rate-limit, store, then broadcast a message; return it."""
    text = clean_text(text)
    if not await ratelimit.allow(user_id=user.pk, room=slug):
        raise ClientError(
            "rate_limited", f"Over {settings.REALTIME_RATE_LIMIT} messages in this room; dropped."
        )
    return await _store_and_publish(user=user, slug=slug, text=text)


async def attachment_post(*, user, upload) -> Message:
    """Store, then broadcast the message that carries a finished upload (named after it); return it.

    Not rate-limited here: creating the upload counted against the rate
    limit (realtime.uploads), and by now the bytes are already stored.
    """
    return await _store_and_publish(user=user, slug=upload.room, text=upload.filename, attachment=upload)


async def _store_and_publish(*, user, slug: str, text: str, attachment=None) -> Message:
    """Store a message, then broadcast it under the room's lock; return it."""
    async with _room_locks[slug]:
        room = await room_get_or_create(slug=slug)
        msg = await Message.objects.acreate(room=room, user=user, text=text, attachment=attachment)
        await events.publish(slug, events.message(msg))
    return msg


async def messages_list(*, slug: str, after: int | None, limit: int) -> list[dict]:
    """Return message events of a room: after ``after`` (oldest first) or the newest ``limit``."""
    query = Message.objects.filter(room__slug=slug).select_related("room", "user", "attachment")
    if after is None:
        newest = [m async for m in query.order_by("-id")[:limit]]
        return [events.message(m) for m in reversed(newest)]
    return [events.message(m) async for m in query.filter(id__gt=after).order_by("id")[:limit]]


async def replay(*, slug: str, after: int, page: int = 200) -> AsyncIterator[dict]:
    """Yield every message event of a room after ``after``, reading a page at a time."""
    while True:
        events_page = await messages_list(slug=slug, after=after, limit=page)
        for event in events_page:
            yield event
        if len(events_page) < page:
            return
        after = events_page[-1]["id"]


def parse_limit(raw: str | None) -> int:
    """Return the ``limit`` query parameter as 1..200 (default 50), or raise ClientError."""
    if raw is None:
        return 50
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 200:
        raise ClientError("invalid", "'limit' must be an integer from 1 to 200.")
    return int(raw)


def parse_after(raw: str | None) -> int | None:
    """Return the ``after`` id query parameter, or raise ClientError."""
    if raw is None or raw == "":
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ClientError("invalid", "'after' must be a non-negative integer id.")
    return int(raw)
