"""Topics: what a live connection subscribes to, and the one place that says who may.

A topic names its channel-layer group, decides who may join it (one rule for
WebSocket, SSE and the app's HTTP API), says what a client receives first
and how it catches up (a replay from a log, or the latest snapshot), which
id de-duplicates its live events, and what client frames do. An app writes
a subclass; the core's connection lifecycle (realtime.connection) does the
rest for both transports. A frame handler receives the connection
(realtime.connection.Connection) and the frame.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import ImproperlyConfigured

from .errors import ClientError

Event = dict[str, Any]
# Frame types a topic may handle: frame "typing" goes to ``Topic.frame_typing``.
FRAME_TYPE_RE = re.compile(r"[a-z][a-z0-9_]{0,31}\Z")


async def _each(events: Iterable[Event]) -> AsyncIterable[Event]:
    for event in events:
        yield event


@dataclass
class Opening:
    """What a new connection receives before live events.

    ``hello`` comes first, then every event of ``catch_up`` (a replay, a
    snapshot). Live events whose id (``Topic.event_id``) is at or below
    ``floor``, or that catch-up already sent, are skipped.
    """

    hello: Event
    floor: int = 0
    catch_up: AsyncIterable[Event] | Iterable[Event] = ()

    def events(self) -> AsyncIterable[Event]:
        """Return the catch-up events (a replay read lazily, or a list such as one snapshot)."""
        if isinstance(self.catch_up, AsyncIterable):
            return self.catch_up
        return _each(self.catch_up)


class Topic:
    """A stream of events clients subscribe to; subclass it in an app.

    ``kind`` names the topic's groups (``"<kind>.<key>"``) and its presence
    and rate-limit keys; instances are cheap and made per request.
    """

    kind: ClassVar[str] = ""
    # Track who is online: a ``presence`` event after catch-up, then ``presence_diff``.
    presence: ClassVar[bool] = False

    def __init__(self, key: str = "") -> None:
        self.key = key

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.kind:
            _kinds[cls.kind] = cls

    @classmethod
    def from_route(cls, **kwargs: Any) -> Topic:
        """Return the topic a URL route names (its keyword arguments)."""
        return cls(**kwargs)

    @property
    def group(self) -> str:
        """Return the channel-layer group of this topic (also its presence key)."""
        return f"{self.kind}.{self.key}" if self.key else self.kind

    def can_join(self, user) -> bool:
        """Return whether ``user`` may read and write this topic; the one access rule."""
        return bool(user is not None and user.is_authenticated and user.is_active)

    async def admit(self, user) -> None:
        """Called before a WebSocket or SSE stream is accepted: raise ClientError to refuse it.

        The default applies :meth:`can_join`. Override it for a check that
        needs the database (await ``db_call``-wrapped functions); a refused
        WebSocket handshake gets 403, a refused stream the error's HTTP status.
        """
        if not self.can_join(user):
            if user is None or not (user.is_authenticated and user.is_active):
                raise ClientError("unauthorized", "Log in or send 'Authorization: Bearer <token>'.")
            raise ClientError("forbidden", "You may not read or write this topic.")

    async def open(self, user, after: int | None) -> Opening:
        """Called once a connection is subscribed: return its hello and its catch-up."""
        return Opening(hello={"type": "hello", "user": user_public(user)})

    def event_id(self, event: Event) -> int | None:
        """Return the id that de-duplicates ``event`` (and SSE's ``id:``), or None."""
        return None

    def handler_for(self, kind: str) -> Callable[[Any, Event], Awaitable[None]] | None:
        """Return the method for a client frame of type ``kind`` (``frame_<kind>``), or None.

        No method of Topic itself starts with ``frame_``: a frame never reaches the core's own.
        """
        if not FRAME_TYPE_RE.match(kind):
            return None
        return getattr(self, f"frame_{kind}", None)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.group}>"


# Every Topic subclass with a kind, by kind: a registry of classes (as Django's of models),
# filled as the apps are loaded, not state of the live connections.
_kinds: dict[str, type[Topic]] = {}


def kinds() -> list[str]:
    """Return the kinds of the loaded apps' topics."""
    return list(_kinds)


def topic_for(kind: str, key: str) -> Topic:
    """Return the topic of ``kind`` (a loaded app's Topic subclass) with ``key``, for another app."""
    try:
        return _kinds[kind](key)
    except KeyError:
        raise ImproperlyConfigured(f"No topic of kind {kind!r}: is its app in INSTALLED_APPS?") from None


def user_public(user) -> Event:
    """Return the public view of a user: ``{"id": 1, "username": "alice"}``."""
    return {"id": user.pk, "username": user.get_username()}
