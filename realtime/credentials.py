"""One identity, end to end: what ends a live connection, and the check it runs.

A connection (WebSocket or SSE stream) remembers the credential it was
opened with and listens to that credential's groups. Deleting a session
(logout, a login as someone else, a password change's new key, clearsessions:
realtime.sessions), changing the password, deactivating the user or revoking
the token sends a notice there (realtime.signals); every connection also
re-checks its credential periodically, so an expired session, or one ended
where this process could not hear it, ends its connections too.

A connection's session key never changes: one opened with a key that was
cycled (password change, login) closes with 4401, and the page reconnects
with its new cookie.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user, get_user_model
from django.http import HttpRequest

from . import events
from .codes import SESSION_ENDED, USER_DEACTIVATED
from .db import db_call
from .models import ApiToken
from .process import loop_task, process, spawn
from .sessions import SessionStore

logger = logging.getLogger(__name__)


class ReadOnlySession(SessionStore):
    """A session to check, never to change.

    ``aget_user`` flushes a session that fails verification and cycles one
    verified by a fallback secret. From a background check that would race
    the request that owns the session (a password change saves it after the
    user), so here both are no-ops; the owner's next request does them.
    """

    # Django signs session data with a salt made of the class name; keep the
    # real store's, or nothing would decode.
    key_salt = "django.contrib.sessions." + SessionStore.__qualname__

    def flush(self) -> None:
        pass

    async def aflush(self) -> None:
        pass

    def cycle_key(self) -> None:
        pass

    async def acycle_key(self) -> None:
        pass


@dataclass(slots=True)  # one per live connection: no instance dict
class Credential:
    """The identity a connection was opened with."""

    user_id: int
    session_key: str | None = None
    token_id: int | None = None

    @classmethod
    def of(cls, request: HttpRequest, user) -> Credential:
        """Return the credential that authenticated ``request`` as ``user``."""
        token = getattr(request, "auth_token", None)
        if token is not None:
            return cls(user_id=user.pk, token_id=token.pk)
        session = getattr(request, "session", None)
        return cls(user_id=user.pk, session_key=session.session_key if session else None)

    def groups(self) -> list[str]:
        """Return the groups whose notices apply to this connection."""
        groups = [events.user_group(self.user_id)]
        if self.session_key:
            groups.append(events.session_group(self.session_key))
        if self.token_id is not None:
            groups.append(events.token_group(self.token_id))
        return groups


@db_call
def check(credential: Credential) -> int | None:
    """Return None while the credential still holds, else the close code (one DB thread hop).

    Sessions are checked with Django's own ``get_user``, so a connection
    holds exactly as long as a view would accept the same cookie.
    """
    user = get_user_model().objects.filter(pk=credential.user_id).first()
    if user is None:
        return SESSION_ENDED
    if not user.is_active:
        return USER_DEACTIVATED
    if credential.token_id is not None:
        live = ApiToken.objects.filter(pk=credential.token_id, revoked=False).exists()
        return None if live else SESSION_ENDED
    if not credential.session_key:
        return SESSION_ENDED
    probe = HttpRequest()
    probe.session = ReadOnlySession(credential.session_key)
    session_user = get_user(probe)
    return None if session_user.pk == credential.user_id else SESSION_ENDED


@dataclass(eq=False, slots=True)  # one per live connection: no instance dict
class Watch:
    """One connection's periodic credential check; ``cancel()`` it when the connection ends."""

    credential: Credential | None
    end: Callable[[int], Awaitable[None]] | None
    cancelled: bool = False
    watches: _Watches | None = None

    def cancel(self) -> None:
        """Stop checking (the connection ended).

        What the watch refers to goes at once: ``end`` is the connection's
        close, which holds the whole consumer. Its heap entry stays until due
        (REALTIME_REVALIDATE_SECONDS) or until the heap is compacted.
        """
        if self.cancelled:
            return
        self.cancelled = True
        self.credential = self.end = None
        if self.watches is not None:
            self.watches.cancelled_one()


@dataclass
class _Watches:
    """Every watched connection of one event loop, by due time (one task checks them)."""

    loop: asyncio.AbstractEventLoop | None = None
    due: list[tuple[float, int, Watch]] = field(default_factory=list)  # a heap
    cancelled: int = 0  # cancelled watches still in ``due``
    # Ties in the heap: first watched, first checked.
    order: Iterator[int] = field(default_factory=itertools.count)

    def cancelled_one(self) -> None:
        """Count a cancelled watch; drop them all once they are most of the heap (churning clients)."""
        self.cancelled += 1
        if self.cancelled > COMPACT_AFTER and self.cancelled * 2 > len(self.due):
            self.due = [entry for entry in self.due if not entry[2].cancelled]
            heapq.heapify(self.due)
            self.cancelled = 0


# Cancelled watches the heap may hold before it is compacted (when they are half of it).
COMPACT_AFTER = 1000

process.declare("credential_watches", _Watches)


def watch(credential: Credential, end: Callable[[int], Awaitable[None]]) -> Watch:
    """Re-check ``credential`` every REALTIME_REVALIDATE_SECONDS; call ``end(code)`` once it fails.

    One task per process checks every connection when it is due, rather
    than a sleeping task per connection: a socket held idle costs a heap entry.
    """
    loop = asyncio.get_running_loop()
    watches = process.credential_watches
    if watches.loop is not loop:
        # The connections of an earlier loop (tests) are gone.
        watches = process.credential_watches = _Watches(loop)
    handle = Watch(credential, end, watches=watches)
    due = loop.time() + settings.REALTIME_REVALIDATE_SECONDS
    heapq.heappush(watches.due, (due, next(watches.order), handle))
    loop_task("credential-watch", _check_due)
    return handle


async def _check_due() -> None:
    """Check each watched credential of this loop when due, until nothing is watched."""
    watches = process.credential_watches
    loop = asyncio.get_running_loop()
    while watches.due:
        # At most a second asleep: a watch added meanwhile may be due sooner (a shorter setting).
        await asyncio.sleep(min(1.0, max(0.0, watches.due[0][0] - loop.time())))
        while watches.due and watches.due[0][0] <= loop.time():
            _, _, handle = heapq.heappop(watches.due)
            if handle.cancelled:
                watches.cancelled = max(0, watches.cancelled - 1)
                continue
            try:
                code = await check(handle.credential)
            except Exception:  # the database may blink; check again next period
                logger.warning("credential check failed; retrying next period", exc_info=True)
                code = None
            if handle.cancelled:  # while checked: counted, though no longer in the heap
                watches.cancelled = max(0, watches.cancelled - 1)
                continue
            if code is None:
                entry = (loop.time() + settings.REALTIME_REVALIDATE_SECONDS, next(watches.order), handle)
                heapq.heappush(watches.due, entry)
            else:
                with contextlib.suppress(Exception):  # a connection already gone
                    await handle.end(code)


def spawn_recheck(credential: Credential, end: Callable[[int], Awaitable[None]]) -> None:
    """Re-check in the background (a REVALIDATE notice); ``end(code)`` on failure."""

    async def run() -> None:
        code = await check(credential)
        if code is not None:
            await end(code)

    spawn(run(), name="realtime-credential-recheck")
