"""One live connection's life, shared by WebSocket and SSE: admit, subscribe, open, release.

Everything a connection takes from the process is taken through one
:class:`Connection` and given back by its :meth:`Connection.release`: the
per-user slot, the channel-layer memberships (the topic's group and the
credential's), the credential watch, the shutdown closer and the presence
entry. ``release()`` is idempotent and runs on every exit path: in the
WebSocket consumer's ``__call__`` ``finally`` (a client gone before hello,
an exception in a handler, a cancelled task), in the SSE stream's
``finally``, and, for a stream whose request was cut before it started, in
the ASGI wrapper's ``finally`` (realtime.asgi). Nothing waits for a
``websocket.disconnect`` that a vanished client never sends.

Live memberships never expire silently: every ``group_expiry / 2`` one task
per process renews the memberships of every live connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from . import credentials, events, metrics, presence, shutdown
from .codes import SERVICE_RESTART
from .credentials import Credential
from .resume import LiveFilter
from .services import REDIS_ERRORS
from .process import spawn
from .topics import Event, Topic

logger = logging.getLogger(__name__)
# One INFO line per connection end: transport, topic kind, duration, close code; nothing else.
connections_log = logging.getLogger("realtime.connections")

# Why a connection was refused, for the transports' answers (and logs).
FORBIDDEN = "forbidden"  # the topic's rule (no identity, an invalid key)
DRAINING = "draining"  # the process is stopping
LIMIT = "limit"  # REALTIME_MAX_CONNECTIONS_PER_USER


@dataclass(eq=False)
class Connection:
    """One live WebSocket or SSE stream: what it holds, and the one place that gives it back.

    A topic's frame handlers receive it: ``user``, ``channel`` (to exclude
    from a publish) and :meth:`send` (an event to this client only).
    """

    topic: Topic
    user: Any
    credential: Credential
    transport: str  # "websocket" | "sse"
    layer: Any
    channel: str
    # Ends the connection with a close code (WebSocket close; SSE: end of stream).
    end: Callable[[int], Awaitable[None]]
    # Queues encoded text (of an event of the given type) behind what is on its way to this client.
    push: Callable[[str, str], Awaitable[None]]
    groups: list[str] = field(default_factory=list)
    admitted: bool = False
    released: bool = False
    watch: credentials.Watch | None = None
    presence_listener: Callable[[str], Awaitable[None]] | None = None
    live_filter: LiveFilter = field(default_factory=lambda: LiveFilter(0))
    # How it ended, set by its transport: a close code, or metrics.CLIENT_GONE (realtime.metrics).
    close_code: Any = None
    opened_at: float = 0.0  # time.monotonic() at admission
    bound_metrics: metrics.ConnectionMetrics | None = None

    async def admit(self) -> str | None:
        """Take a connection slot of the user unless refused; return the refusal reason, or None."""
        if not self.topic.can_join(self.user):
            anonymous = self.user is None or not self.user.is_authenticated
            metrics.connection_refused(self.transport, metrics.NO_IDENTITY if anonymous else FORBIDDEN)
            return FORBIDDEN
        if shutdown.draining():
            metrics.connection_refused(self.transport, DRAINING)
            return DRAINING
        if not await presence.admit(user_id=self.user.pk, limit=settings.REALTIME_MAX_CONNECTIONS_PER_USER):
            metrics.connection_refused(self.transport, LIMIT)
            return LIMIT
        self.admitted = True
        self.opened_at = time.monotonic()
        self.bound_metrics = metrics.connection_opened(self)
        _live.add(self)
        return None

    async def subscribe(self) -> None:
        """Join the topic's and the credential's groups; watch the credential; close on SIGTERM."""
        self.watch = credentials.watch(self.credential, self.end)
        shutdown.register(self.restart)
        wanted = [self.topic.group, *self.credential.groups()]
        self.groups = await events.resubscribe(self.layer, self.channel, self.groups, wanted)
        _ensure_renewer(self.layer)

    async def open(self, after: int | None) -> AsyncIterator[Event | str]:
        """Yield what comes before live events: hello, catch-up, then presence (already encoded).

        Catch-up events with an id are remembered, so the same events arriving
        live are skipped (:meth:`fresh`).
        """
        opening = await self.topic.open(self.user, after)
        self.live_filter = LiveFilter(opening.floor)
        yield opening.hello
        count = 0
        async for event in opening.events():
            event_id = self.topic.event_id(event)
            if event_id is not None:
                self.live_filter.replaying(event_id)
            count += 1
            yield event
        metrics.caught_up(self.topic.kind, count)
        if self.topic.presence:
            yield await self.join_presence()

    async def join_presence(self) -> str:
        """Show the user online in the topic; return the encoded ``presence`` event to send first."""
        self.presence_listener = self._push_presence_diff
        return await presence.join(topic=self.topic.group, user=self.user, deliver=self.presence_listener)

    async def _push_presence_diff(self, text: str) -> None:
        await self.push(text, "presence_diff")

    async def send(self, event: Event) -> None:
        """Send one event to this client only, after what is already on its way."""
        await self.push(events.encode(event), event["type"])

    def fresh(self, message: dict) -> bool:
        """Return whether a published event is new to this connection (not its own, not caught up)."""
        if message.get("exclude") == self.channel:
            return False
        event_id = message.get("id")
        if event_id is None or self.live_filter.fresh(event_id):
            return True
        metrics.duplicate_skipped(self.topic.kind)  # counted only when skipped: rare
        return False

    def revalidate(self) -> None:
        """Called on a REVALIDATE notice (password changed): re-check without pausing delivery."""
        credentials.spawn_recheck(self.credential, self.end)

    async def restart(self) -> None:
        """Called on SIGTERM: end with 1012 so the client reconnects and resumes."""
        await self.end(SERVICE_RESTART)

    def release(self) -> None:
        """Give back everything this connection took; safe to call again, and from any exit path."""
        if self.released:
            return
        self.released = True
        _live.discard(self)
        if self.watch is not None:
            self.watch.cancel()
        shutdown.unregister(self.restart)
        if self.presence_listener is not None:
            presence.leave(topic=self.topic.group, user=self.user, deliver=self.presence_listener)
        if self.admitted:
            presence.release(user_id=self.user.pk)
            self._count_end()
        if self.groups:
            # The only step that may wait (Redis): a task of its own, so a cancelled
            # connection still leaves its groups.
            spawn(_leave_groups(self.layer, self.channel, self.groups))
            self.groups = []

    def _count_end(self) -> None:
        """Count this admitted connection's end and log one line: no credential, user or text."""
        seconds = time.monotonic() - self.opened_at
        code = metrics.connection_closed(self.bound_metrics, self.close_code, seconds)
        if connections_log.isEnabledFor(logging.INFO):
            kind = self.bound_metrics.topic
            connections_log.info(
                "connection ended: transport=%s topic=%s duration=%.3fs code=%s",
                self.transport,
                kind,
                seconds,
                code,
                extra={
                    "transport": self.transport,
                    "topic": kind,
                    "duration_s": round(seconds, 3),
                    "code": code,
                },
            )


async def _leave_groups(layer, channel: str, groups: list[str]) -> None:
    """Leave ``groups``; a layer that is down forgets the memberships itself (group expiry)."""
    with contextlib.suppress(*REDIS_ERRORS):
        for group in groups:
            await layer.group_discard(group, channel)


# Every admitted, not yet released connection of this process.
_live: set[Connection] = set()
_renewer: asyncio.Task | None = None


def live_connections() -> int:
    """Return how many connections this process holds now."""
    return len(_live)


def _ensure_renewer(layer) -> None:
    """Start the task that renews live memberships on this event loop, once."""
    global _renewer
    loop = asyncio.get_running_loop()
    if _renewer is None or _renewer.done() or _renewer.get_loop() is not loop:
        # A context of its own: it serves every connection, and outlives the one that started it.
        _renewer = loop.create_task(
            _renew(layer), name="realtime-renew-groups", context=contextvars.Context()
        )


async def _renew(layer) -> None:
    """Re-add every live connection to its groups twice per ``group_expiry``, while any is live."""
    interval = max(0.5, getattr(layer, "group_expiry", 86400) / 2)
    while _live:
        await asyncio.sleep(interval)
        for connection in list(_live):
            for group in list(connection.groups):
                try:
                    await layer.group_add(group, connection.channel)
                except REDIS_ERRORS as exc:  # Redis down: the relay closes its sockets to resume
                    metrics.layer_error("renew")
                    logger.warning("renewing group %s failed: %r", group, exc)
                    break
