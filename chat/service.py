"""Chat business rules, shared by the room topic (WebSocket, SSE) and the HTTP API."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import InterfaceError, OperationalError, connection

from realtime import ClientError, db_call, publish_many, rate_allow, spawn

from . import conf, events
from .models import Message, Room

if TYPE_CHECKING:
    from .topic import RoomTopic

logger = logging.getLogger(__name__)


@dataclass(eq=False)
class _Post:
    """A message on its way: what to store, and who waits for the stored Message."""

    user: Any
    text: str
    attachment: Any
    stored: asyncio.Future


# Messages waiting to be stored, per room. One writer task per busy room
# stores all that waited in one INSERT (one commit, one fsync), and while it
# broadcasts them, in id order, the next batch is being stored. So this
# process broadcasts a room's messages in id order (a client resuming from
# its last id then cannot skip a message that was stored earlier but
# broadcast later).
_waiting: dict[str, list[_Post]] = {}


def clean_text(text: object) -> str:
    """Return the trimmed message text, or raise ClientError if it breaks the rules."""
    if not isinstance(text, str):
        raise ClientError("invalid", "'text' must be a string.")
    text = text.strip()
    if not text:
        raise ClientError("invalid", "'text' must not be empty.")
    if "\x00" in text or not _encodable(text):
        # A lone surrogate cannot be stored (UTF-8), nor NUL by PostgreSQL: refuse both everywhere.
        raise ClientError("invalid", "'text' must be Unicode text without NUL or lone surrogates.")
    if len(text) > (limit := conf.max_text()):
        raise ClientError("too_large", f"'text' is over {limit} characters.")
    return text


def _encodable(text: str) -> bool:
    """Return whether ``text`` encodes as UTF-8 (no lone surrogates)."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


# Each function below is one hop to the realtime DB thread (realtime.db).
# Rooms are not cached in-process: finding one is an indexed read inside a
# hop made anyway, and a cache could outlive a room deleted by another process.


@db_call
def room_open(*, slug: str) -> int:
    """Create the room ``slug`` on first use; return the id of its newest message, 0 when it has none."""
    with connection.cursor() as cursor:
        cursor.execute(_newest_message_sql(), [slug])
        row = cursor.fetchone()
    if row is None:
        Room.objects.get_or_create(slug=slug)
        return 0
    return row[0] or 0


@functools.cache
def _newest_message_sql() -> str:
    """Return the SQL of room_open's one query: the room's newest message id, no row if no room.

    Raw SQL on the handshake path: building this query with the ORM costs
    about 0.5 ms here, twenty times what running it costs.
    """
    quote = connection.ops.quote_name
    room, message = quote(Room._meta.db_table), quote(Message._meta.db_table)
    room_id = quote(Message._meta.get_field("room").column)
    return (
        f"SELECT (SELECT m.id FROM {message} m WHERE m.{room_id} = r.id ORDER BY m.id DESC LIMIT 1)"
        f" FROM {room} r WHERE r.slug = %s"
    )


async def message_post(*, user, topic: RoomTopic, text: object) -> Message:
    """Validate, rate-limit, store, then broadcast a message; return it."""
    text = clean_text(text)
    if not await rate_allow(user_id=user.pk, key=topic.group):
        raise ClientError(
            "rate_limited", f"Over {settings.REALTIME_RATE_LIMIT} messages in this room; dropped."
        )
    return await _store_and_publish(user=user, topic=topic, text=text)


async def typing_allowed(*, user, topic: RoomTopic) -> bool:
    """Record one typing event by ``user`` in the room; return False over CHAT_TYPING_RATE."""
    return await rate_allow(user_id=user.pk, key=f"typing:{topic.group}", rate=conf.typing_rate())


async def attachment_post(*, user, topic: RoomTopic, upload) -> Message:
    """Store, then broadcast the message that carries a finished upload (named after it); return it.

    Not rate-limited here: creating the upload counted against the rate
    limit (the uploads app), and by now the bytes are already stored.
    """
    return await _store_and_publish(user=user, topic=topic, text=upload.filename, attachment=upload)


async def _store_and_publish(*, user, topic: RoomTopic, text: str, attachment=None) -> Message:
    """Store a message, then broadcast it; return it once both are done."""
    loop = asyncio.get_running_loop()
    post = _Post(user, text, attachment, loop.create_future())
    waiting = _waiting.get(topic.slug)
    if waiting is None:
        _waiting[topic.slug] = [post]
        # A task of its own (realtime.spawn): the writer serves every poster, and outlives this one.
        spawn(_write_room(topic))
    else:
        waiting.append(post)
    return await post.stored


async def _write_room(topic: RoomTopic) -> None:
    """The room's writer: store what waits in one go and broadcast it, the next batch already storing."""
    slug = topic.slug
    batch, following = _take(slug), []
    storing = _store(slug, batch)
    try:
        while True:
            stored = await storing
            following = _take(slug)  # what arrived while this batch was stored
            storing = _store(slug, following) if following else None
            await _broadcast(topic, batch, stored)
            if storing is None:
                following = _take(slug)  # what arrived during the broadcast
                if not following:
                    del _waiting[slug]  # no await since the take: nothing can be left behind
                    return
                storing = _store(slug, following)
            batch = following
    finally:
        if storing is not None:
            storing.cancel()
        # Only if this task was cancelled (loop shutdown): no poster waits forever.
        for post in [*batch, *following, *_waiting.pop(slug, [])]:
            if not post.stored.done():
                post.stored.cancel()


def _take(slug: str) -> list[_Post]:
    """Return the room's waiting posts; later ones wait for the next batch."""
    posts, _waiting[slug] = _waiting[slug], []
    return posts


def _store(slug: str, posts: list[_Post]) -> asyncio.Future[list[Message | Exception]]:
    """Start storing a batch; its future gives each post's Message, or the error storing it."""

    async def store() -> list[Message | Exception]:
        try:
            return await _messages_create(slug=slug, posts=posts)
        except Exception as exc:  # the database is down: every poster learns it
            return [exc] * len(posts)

    return asyncio.ensure_future(store())


async def _broadcast(topic: RoomTopic, posts: list[_Post], stored: list[Message | Exception]) -> None:
    """Publish a stored batch in id order, then answer its posters."""
    ordered = sorted((m for m in stored if isinstance(m, Message)), key=attrgetter("pk"))
    # Stored anyway: a message whose publish fails reaches clients by replay.
    await publish_many(topic, [events.message(msg) for msg in ordered])
    for msg, post in zip(stored, posts, strict=True):
        if not post.stored.done():
            if isinstance(msg, Message):
                post.stored.set_result(msg)
            else:
                post.stored.set_exception(msg)


# Errors of the connection, not of one row: the batch fails (the database is away).
_CONNECTION_ERRORS = (OperationalError, InterfaceError)


@db_call
def _messages_create(*, slug: str, posts: list[_Post]) -> list[Message | Exception]:
    """Store a room's messages in one INSERT (and the room on first use); return each, or its error.

    One bad row (an attachment used twice, text a driver cannot encode or a
    database cannot store) must not sink the others: any error but a
    connection's makes the batch go again one row at a time, each row with
    its own outcome. A connection's error fails the batch (nothing stored).
    """
    room = _room(slug)
    try:
        return Message.objects.bulk_create(
            [Message(room=room, user=p.user, text=p.text, attachment=p.attachment) for p in posts]
        )
    except _CONNECTION_ERRORS:
        raise
    except Exception:
        logger.info("a batch of %d messages in %s failed; storing them one by one", len(posts), slug)
    stored: list[Message | Exception] = []
    for n, p in enumerate(posts):
        try:
            msg = Message.objects.create(room=room, user=p.user, text=p.text, attachment=p.attachment)
        except _CONNECTION_ERRORS as exc:
            # The connection is gone: the rows stored so far stay stored, the rest fail.
            stored.extend([exc] * (len(posts) - n))
            break
        except Exception as exc:
            msg = exc
        stored.append(msg)
    return stored


def _room(slug: str) -> Room:
    """Return the room ``slug`` (its id and slug; other fields load when read), creating it on first use.

    Found by a prepared query: ``get_or_create`` builds its query on each
    call, and every stored batch needs the room (bench/README.md).
    """
    with connection.cursor() as cursor:
        cursor.execute(_room_id_sql(), [slug])
        row = cursor.fetchone()
    if row is None:
        room, _ = Room.objects.get_or_create(slug=slug)
        return room
    return Room.from_db(connection.alias, ["id", "slug"], [row[0], slug])


@functools.cache
def _room_id_sql() -> str:
    """Return the SQL of a room's id by slug."""
    quote = connection.ops.quote_name
    meta = Room._meta
    slug = quote(meta.get_field("slug").column)
    return f"SELECT {quote(meta.pk.column)} FROM {quote(meta.db_table)} WHERE {slug} = %s"


@db_call
def messages_list(*, slug: str, after: int | None, limit: int) -> list[dict]:
    """Return message events of a room: after ``after`` (oldest first) or the newest ``limit``."""
    query = Message.objects.filter(room__slug=slug).select_related("room", "user", "attachment")
    if after is None:
        return [events.message(m) for m in reversed(query.order_by("-id")[:limit])]
    return [events.message(m) for m in query.filter(id__gt=after).order_by("id")[:limit]]


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
    # Length first: int() refuses strings of over 4,300 digits with a ValueError.
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 3) or not 1 <= int(raw) <= 200:
        raise ClientError("invalid", "'limit' must be an integer from 1 to 200.")
    return int(raw)


# -- rooms: creation limit and listing ------------------------------------------
# A room is created by the first connection or message naming it (room_open,
# _messages_create). How many a user may create is limited
# (CHAT_ROOMS_PER_USER_PER_HOUR): the room's admission step asks before the
# handshake or the SSE stream that would create one, chat.views before
# storing a valid message that would.

ROOM_CREATION_KEY = "room-create"  # the rate-limit key of room creations (realtime.ratelimit)
ROOM_LIMIT_DETAIL = "You may create {} rooms an hour; join an existing room or retry later."
# Slugs of rooms seen to exist: a handshake to a known room costs no query. A
# room deleted meanwhile only means its re-creation is not counted.
_known_rooms: dict[str, None] = {}
KNOWN_ROOMS_MAX = 10_000


def room_exists(*, slug: str) -> bool:
    """Return whether the room ``slug`` exists (sync ORM: the DB thread or a request's thread)."""
    if slug in _known_rooms:
        return True
    if not Room.objects.filter(slug=slug).exists():
        return False
    _remember_room(slug)
    return True


def _remember_room(slug: str) -> None:
    if len(_known_rooms) >= KNOWN_ROOMS_MAX:
        _known_rooms.pop(next(iter(_known_rooms)))
    _known_rooms[slug] = None


def _room_creation_rate() -> str:
    return f"{conf.rooms_per_user_per_hour()}/1h"


def room_creation_allowed_sync(*, user, slug: str) -> bool:
    """Return whether ``user`` may open the room ``slug``: it exists, or they may create one more.

    An allowed creation is made at once, so what follows (the connection,
    the message) finds the room, and counts once: one of the user's
    CHAT_ROOMS_PER_USER_PER_HOUR. A refused user creates nothing. Sync
    ORM, meant for the realtime DB thread, which runs one call at a time: of
    many requests racing to open one new room, the first creates it and the
    others find it (in each process). The limit itself is checked on the
    event loop that waits for this call (realtime.ratelimit, realtime.db).
    """
    if room_exists(slug=slug):
        return True
    if not async_to_sync(rate_allow)(user_id=user.pk, key=ROOM_CREATION_KEY, rate=_room_creation_rate()):
        return False
    Room.objects.get_or_create(slug=slug)
    _remember_room(slug)
    return True


async def room_creation_allowed(*, user, slug: str) -> bool:
    """Async :func:`room_creation_allowed_sync` (one hop to the realtime DB thread, none for a known room)."""
    if slug in _known_rooms:
        return True
    return await db_call(room_creation_allowed_sync)(user=user, slug=slug)


def room_limit_detail() -> str:
    """Return the detail of the answer to one new room too many."""
    return ROOM_LIMIT_DETAIL.format(conf.rooms_per_user_per_hour())


async def require_room_creation_allowed(*, user, slug: str) -> None:
    """Raise ClientError ``rate_limited`` (429 over HTTP) unless :func:`room_creation_allowed`."""
    if not await room_creation_allowed(user=user, slug=slug):
        raise ClientError("rate_limited", room_limit_detail())


@db_call
def rooms_listed(*, online: list[str], named: list[str], offset: int, count: int) -> tuple[dict, list]:
    """Return the names of the rooms ``named``, and ``count`` rooms not ``online`` from ``offset``.

    Returns ``({slug: name}, [(slug, name), ...])``; rooms by slug.
    """
    names = dict(Room.objects.filter(slug__in=named).values_list("slug", "name")) if named else {}
    others = Room.objects.exclude(slug__in=online).order_by("slug").values_list("slug", "name")
    return names, (list(others[offset : offset + count]) if count else [])


def parse_page(raw: str | None) -> int:
    """Return the ``page`` query parameter as 1..100000 (default 1), or raise ClientError."""
    if raw is None:
        return 1
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= 100_000:
        raise ClientError("invalid", "'page' must be an integer from 1 to 100000.")
    return int(raw)
