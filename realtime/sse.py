"""Server-Sent Events: ``/sse/rooms/<slug>/``, the same events as the WebSocket.

An async Django view, so it passes through ``MIDDLEWARE`` like any other.
The stream holds no thread and no database connection while open: it waits
on its own channel-layer channel, which receives the room's events, the
user's and the credential's notices, and this stream's presence diffs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from . import chat, events, lifecycle, presence, shutdown
from .chat import ClientError
from .layers import OVERFLOW
from .resume import LiveFilter
from .views import json_error


def frame(text: str, event: str, message_id: int | None = None) -> str:
    """Return one SSE event; message events carry their id for Last-Event-ID."""
    head = f"id: {message_id}\n" if message_id is not None else ""
    # The text is compact JSON: one line, so one data field.
    return f"{head}event: {event}\ndata: {text}\n\n"


def event_frame(event: dict) -> str:
    """Return the SSE event of an event dict."""
    return frame(events.encode(event), event["type"], event.get("id") if event["type"] == "message" else None)


async def room_stream(request: HttpRequest, slug: str) -> HttpResponse:
    """Open the event stream of a room; resume from ``Last-Event-ID`` or ``?after=``."""
    user = await request.auser()
    if not chat.can_join(user, slug):
        return json_error("unauthorized", "Log in or send 'Authorization: Bearer <token>'.", 401)
    try:
        after = chat.parse_after(request.headers.get("Last-Event-ID") or request.GET.get("after"))
    except ClientError as exc:
        return json_error(exc.code, exc.detail, exc.http_status)
    if shutdown.draining():
        return json_error("unavailable", "The server is restarting; retry shortly.", 503)
    if not await presence.admit(user_id=user.pk, limit=settings.REALTIME_MAX_CONNECTIONS_PER_USER):
        return json_error("forbidden", "Too many live connections for this user.", 403)
    # The middleware's queries left a connection with this request's thread, kept
    # until the response ends: give it back now, or every open stream would hold
    # one (a PostgreSQL pool of 10 serves 10 streams). The stream's own queries
    # go through the realtime DB thread (realtime.db).
    await sync_to_async(close_old_connections)()
    return EventStreamResponse(RoomStream(request, user, slug, after))


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response that gives its connection slot back when closed."""

    def __init__(self, stream: RoomStream) -> None:
        super().__init__(stream.frames(), content_type="text/event-stream")
        self.stream = stream
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass events through unbuffered

    def close(self) -> None:
        """Called by Django when the response ends, streamed or not."""
        super().close()
        if self.stream.user is not None:
            presence.release(user_id=self.stream.user.pk)
            self.stream.user = None


class RoomStream:
    """One open SSE stream: its channel, groups and credential."""

    def __init__(self, request: HttpRequest, user, slug: str, after: int | None) -> None:
        self.user, self.slug, self.after = user, slug, after
        self.credential = lifecycle.Credential.of(request, user)
        self.layer = get_channel_layer()

    async def frames(self) -> AsyncIterator[str]:
        """Yield hello, the replay, presence, then live events until the credential ends."""
        self.channel = await self.layer.new_channel()
        self.groups: list[str] = []
        await self.subscribe()
        joined, watch, receiving = False, lifecycle.watch(self.credential, self.end), None
        shutdown.register(self.restart)
        try:
            last_id = await chat.room_open(slug=self.slug)
            live_filter = LiveFilter(last_id if self.after is None else self.after)
            yield event_frame(events.hello(user=self.user, room=self.slug, last_id=last_id))
            if self.after is not None:
                async for event in chat.replay(slug=self.slug, after=self.after):
                    live_filter.replaying(event["id"])
                    yield event_frame(event)
            joined = True
            yield frame(await presence.join(room=self.slug, user=self.user, deliver=self.deliver), "presence")
            while True:
                # One receive at a time, never cancelled by the keep-alive timer.
                receiving = receiving or asyncio.ensure_future(self.layer.receive(self.channel))
                done, _ = await asyncio.wait({receiving}, timeout=settings.REALTIME_SSE_KEEPALIVE)
                if not done:
                    yield ": keep-alive\n\n"
                    continue
                message, receiving = receiving.result(), None
                if message["type"] in (events.CLOSE, OVERFLOW):
                    return  # an overflowed stream ends; EventSource resumes with Last-Event-ID
                if message["type"] == events.REVALIDATE:
                    lifecycle.spawn_recheck(self.credential, self.end, self.subscribe)
                    continue
                if message["type"] != events.DELIVER:
                    continue
                message_id = message.get("id")
                if message_id is not None and not live_filter.fresh(message_id):
                    continue  # sent by replay, or before this stream's starting point
                yield frame(message["text"], message["event"], message_id)
        finally:
            watch.cancel()
            shutdown.unregister(self.restart)
            if receiving:
                receiving.cancel()
            if joined:
                await presence.leave(room=self.slug, user=self.user, deliver=self.deliver)
                joined = False
            for group in self.groups:
                await self.layer.group_discard(group, self.channel)

    async def subscribe(self) -> None:
        """Listen to the room's and the credential's groups (again after a session move)."""
        groups = [events.room_group(self.slug), *self.credential.groups()]
        self.groups = await events.resubscribe(self.layer, self.channel, self.groups, groups)

    async def deliver(self, text: str) -> None:
        """Queue a presence diff into this stream."""
        await self.layer.send(self.channel, {"type": events.DELIVER, "text": text, "event": "presence_diff"})

    async def restart(self) -> None:
        """The server is stopping: end the stream; EventSource reconnects with Last-Event-ID."""
        await self.end(shutdown.SERVICE_RESTART)

    async def end(self, code: int) -> None:
        """End the stream (the credential failed its check)."""
        await self.layer.send(self.channel, {"type": events.CLOSE, "code": code})
