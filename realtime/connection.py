"""One live connection's whole life, for WebSocket and SSE alike: :meth:`Connection.run`.

One coroutine admits the connection (the topic's async admission step, the
process draining, the per-user slot), subscribes it, has the transport
accept it, sends its opening (hello, catch-up, presence), runs the live loop
(client frames, control notices, live events) and, in one ``finally``,
gives back everything it took: the per-user slot, the channel-layer
memberships, the credential watch, the shutdown closer and the presence
entry. A client gone mid-handshake, an exception and a cancellation all
leave through that ``finally``; nothing waits for a ``websocket.disconnect``
that a vanished client never sends.

A transport (realtime.consumers for WebSocket, realtime.sse for SSE)
supplies only :class:`Transport`'s methods. A database error in the
topic's ``open()`` or in a frame handler ends the connection with an
``unavailable`` error event and close code 1011 (the wire contract,
section 3), counted in the metrics; the client reconnects and resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from . import credentials, events, memberships, metrics, presence, shutdown, slots
from .codes import SERVER_ERROR, SERVICE_RESTART, TRY_AGAIN_LATER
from .credentials import Credential
from .errors import ClientError
from .layers import OVERFLOW
from .middleware import DATABASE_UNAVAILABLE
from .resume import LiveFilter
from .topics import Event, Topic
from .transport import FRAME, Transport, decode_frame

logger = logging.getLogger(__name__)
# One INFO line per connection end: transport, topic kind, duration, close code; nothing else.
connections_log = logging.getLogger("realtime.connections")

# Why a connection was refused, for the metrics (realtime.metric_series.REFUSAL_REASONS).
FORBIDDEN = "forbidden"  # the topic's admission step refused an identified user
DRAINING = "draining"  # the process is stopping
LIMIT = "limit"  # REALTIME_MAX_CONNECTIONS_PER_USER
UNAVAILABLE = "unavailable"  # the database could not answer the admission step


# Slots: one per live socket, held for its whole life; an instance dict costs more than the slots.
@dataclass(eq=False, slots=True)
class Connection:
    """One live WebSocket or SSE stream: what it holds, and the one place that gives it back.

    A topic's frame handlers receive it: ``user``, ``channel`` (to exclude
    from a publish) and :meth:`send` (an event to this client only).
    """

    topic: Topic
    user: Any
    credential: Credential
    transport: Transport
    layer: Any
    channel: str
    groups: list[str] = field(default_factory=list)
    admitted: bool = False
    released: bool = False
    watch: credentials.Watch | None = None
    presence_listener: Any = None
    live_filter: LiveFilter = field(default_factory=lambda: LiveFilter(0))
    opened_at: float = 0.0  # time.monotonic() at admission
    bound_metrics: metrics.ConnectionMetrics | None = None

    @property
    def close_code(self) -> Any:
        """How it ended, as its transport saw it: a close code, metrics.CLIENT_GONE, or None."""
        return self.transport.close_code

    # -- the driver ----------------------------------------------------------

    async def run(self, after: int | None) -> None:
        """Drive the connection from admission to release; returns when it has ended."""
        accepted = False
        try:
            refusal = await self.admit()
            if refusal is not None:
                await self.transport.refuse(refusal)
                return
            await self.subscribe()
            await self.transport.accept()
            accepted = True
            await self.send_opening(after)
            # The live loop, inline: this frame waits for the connection's whole life, and an
            # idle connection should hold no more suspended frames than it needs.
            transport = self.transport
            while (message := await transport.receive()) is not None:
                kind = message["type"]
                if kind == FRAME:
                    await self.frame(message)
                elif kind == events.DELIVER:
                    if self.fresh(message):
                        await transport.send(message["text"], message["event"], message.get("id"))
                elif await self.notice(message):
                    return
        except DATABASE_UNAVAILABLE as exc:
            logger.warning("database unavailable; closing a %s connection: %s", self.transport.name, exc)
            metrics.database_unavailable(self.transport.name)
            await self._fail(accepted, events.error("unavailable", "The database is unavailable; retry."))
        except asyncio.CancelledError:  # the server let go of it: the client is gone
            if self.transport.close_code is None:
                self.transport.close_code = metrics.CLIENT_GONE
            raise
        except Exception:
            logger.exception("a %s connection to %r failed", self.transport.name, self.topic)
            await self._fail(accepted, None)
        finally:
            self.release()

    async def _fail(self, accepted: bool, error: Event | None) -> None:
        """End a connection an error broke: the error event first when accepted, then 1011."""
        if self.close_code is not None:
            return  # it had ended already (the client is gone)
        try:
            if accepted and error is not None:
                await self.transport.send(events.encode(error), "error")
            if accepted:
                await self.transport.close(SERVER_ERROR)
            else:
                await self.transport.refuse(ClientError("unavailable", "Try again shortly."))
        except Exception as exc:  # the client is gone as well
            logger.debug("ending a failed connection: %r", exc)

    # -- admission, subscription, opening -----------------------------------

    async def admit(self) -> ClientError | None:
        """Run the topic's admission step and take a slot of the user; return the refusal, or None."""
        try:
            await self.topic.admit(self.user)
        except ClientError as error:
            anonymous = self.user is None or not self.user.is_authenticated
            metrics.connection_refused(self.transport.name, metrics.NO_IDENTITY if anonymous else FORBIDDEN)
            return error
        except DATABASE_UNAVAILABLE as exc:
            logger.warning("database unavailable while admitting a connection: %s", exc)
            metrics.connection_refused(self.transport.name, UNAVAILABLE)
            return ClientError("unavailable", "The database is unavailable; retry shortly.")
        if shutdown.draining():
            metrics.connection_refused(self.transport.name, DRAINING)
            return ClientError("unavailable", "The server is restarting; retry shortly.")
        if not await slots.admit(user_id=self.user.pk, limit=settings.REALTIME_MAX_CONNECTIONS_PER_USER):
            metrics.connection_refused(self.transport.name, LIMIT)
            return ClientError("forbidden", "Too many live connections for this user.")
        self.admitted = True
        self.opened_at = time.monotonic()
        self.bound_metrics = metrics.connection_opened(self.transport.name, self.topic.kind)
        memberships.hold(self)
        return None

    async def subscribe(self) -> None:
        """Join the topic's and the credential's groups; watch the credential; close on SIGTERM."""
        self.watch = credentials.watch(self.credential, self.end)
        shutdown.register(self.restart)
        wanted = [self.topic.group, *self.credential.groups()]
        self.groups = await events.resubscribe(self.layer, self.channel, self.groups, wanted)

    async def send_opening(self, after: int | None) -> None:
        """Send hello, the catch-up and presence, before live events (subscribed already).

        Subscribed before catching up, so nothing falls between the two; live
        events already caught up are skipped by id (:meth:`fresh`).
        """
        async for item in self.open(after):
            if isinstance(item, str):
                await self.transport.send(item, "presence")
            else:
                await self.transport.send(events.encode(item), item["type"], self.topic.event_id(item))

    async def open(self, after: int | None):
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
            self.presence_listener = self._push_presence_diff
            yield await presence.join(topic=self.topic.group, user=self.user, deliver=self.presence_listener)

    async def _push_presence_diff(self, text: str) -> None:
        await self.transport.push(text, "presence_diff")

    # -- client frames, notices, live events --------------------------------

    async def frame(self, message: dict) -> None:
        """Handle one client frame; a ClientError becomes an error event, and the connection stays."""
        try:
            await self.command(decode_frame(message.get("text"), message.get("bytes")))
        except ClientError as exc:
            metrics.client_error(self.transport.name, exc.code)
            await self.send(events.error(exc.code, exc.detail))

    async def command(self, frame: Event) -> None:
        """Dispatch one decoded client frame on its ``type``: ``ping`` here, the rest to the topic."""
        kind = frame.get("type")
        if not isinstance(kind, str):
            raise ClientError("invalid", "Every frame needs a string 'type'.")
        if kind == "ping":
            await self.send(events.pong())
            return
        handler = self.topic.handler_for(kind)
        if handler is None:
            raise ClientError("unknown_type", f"Unknown frame type {kind[:50]!r}.")
        await handler(self, frame)

    async def notice(self, message: dict) -> bool:
        """Handle a control notice from the layer; return whether the connection ended."""
        kind = message["type"]
        if kind == events.CLOSE:  # the credential ended (4401, 4403), or SIGTERM (1012)
            await self.transport.close(message["code"])
            return True
        if kind == OVERFLOW:  # fell too far behind: the client resumes a little later
            await self.transport.close(TRY_AGAIN_LATER)
            return True
        if kind == events.REVALIDATE:  # the password changed: re-check without pausing delivery
            credentials.spawn_recheck(self.credential, self.end)
        return False

    async def send(self, event: Event) -> None:
        """Send one event to this client only, after what is already on its way."""
        await self.transport.push(events.encode(event), event["type"])

    def fresh(self, message: dict) -> bool:
        """Return whether a published event is new to this connection (not its own, not caught up)."""
        if message.get("exclude") == self.channel:
            return False
        event_id = message.get("id")
        if event_id is None or self.live_filter.fresh(event_id):
            return True
        metrics.duplicate_skipped(self.topic.kind)  # counted only when skipped: rare
        return False

    async def end(self, code: int) -> None:
        """End the connection with ``code`` from any task (a failed credential check)."""
        await self.transport.end(code)

    async def restart(self) -> None:
        """Called on SIGTERM: end with 1012 so the client reconnects and resumes."""
        await self.transport.end(SERVICE_RESTART)

    # -- release ---------------------------------------------------------------

    def release(self) -> None:
        """Give back everything this connection took; safe to call again, and from any exit path."""
        if self.released:
            return
        self.released = True
        if self.watch is not None:
            self.watch.cancel()
        shutdown.unregister(self.restart)
        if self.presence_listener is not None:
            presence.leave(topic=self.topic.group, user=self.user, deliver=self.presence_listener)
        if self.admitted:
            memberships.drop(self)
            slots.release(user_id=self.user.pk)
            self._count_end()
        if self.groups:
            memberships.leave(self.layer, self.channel, self.groups)
            self.groups = []

    def _count_end(self) -> None:
        """Count this admitted connection's end and log one line: no credential, user or text."""
        seconds = time.monotonic() - self.opened_at
        ended = metrics.OTHER if self.close_code is None else self.close_code
        code = metrics.connection_closed(self.bound_metrics, ended, seconds)
        if connections_log.isEnabledFor(logging.INFO):
            kind = self.bound_metrics.topic
            connections_log.info(
                "connection ended: transport=%s topic=%s duration=%.3fs code=%s",
                self.transport.name,
                kind,
                seconds,
                code,
                extra={
                    "transport": self.transport.name,
                    "topic": kind,
                    "duration_s": round(seconds, 3),
                    "code": code,
                },
            )
