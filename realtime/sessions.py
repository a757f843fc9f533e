"""Session engine that remembers where a cycled session key went.

``update_session_auth_hash`` (password change) and ``login`` cycle the
session key. Connections opened with the old key follow it here, so the
session that changed the password keeps its sockets while every other
session's connections close. Select it with ``SESSION_ENGINE``.
"""

from __future__ import annotations

from django.contrib.sessions.backends.db import SessionStore as DbSessionStore
from django.core.cache import cache

MOVE_TTL = 600


def moved_key(session_key: str) -> str:
    """Return the cache key that records where ``session_key`` moved."""
    from .events import session_group

    return "realtime:session-moved:" + session_group(session_key)


class SessionStore(DbSessionStore):
    """Database sessions that record key cycling in the cache."""

    def cycle_key(self) -> None:
        """Create a new key for the same data, and remember the move."""
        old = self.session_key
        super().cycle_key()
        if old and self.session_key:
            cache.set(moved_key(old), self.session_key, MOVE_TTL)

    async def acycle_key(self) -> None:
        """Async :meth:`cycle_key`."""
        old = self.session_key
        await super().acycle_key()
        if old and self.session_key:
            await cache.aset(moved_key(old), self.session_key, MOVE_TTL)


def follow_moves(session_key: str, hops: int = 3) -> str:
    """Return the key a session lives under now, following recorded moves (sync: run it off the loop)."""
    for _ in range(hops):
        moved = cache.get(moved_key(session_key))
        if not moved:
            break
        session_key = moved
    return session_key
