"""Server-Sent Events for any topic: the same events as its WebSocket, one per SSE event.

``stream_view(MyTopic)`` is an async Django view, so it passes through
``MIDDLEWARE`` like any other. The stream holds no thread and no database
connection while open: it waits on its own channel-layer channel, which
receives the topic's events, the user's and the credential's notices, and
this stream's presence diffs. Its connection (realtime.connection) is
released in the stream's ``finally``, or by the ASGI wrapper
(realtime.asgi) if the request is cut before the stream starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import close_old_connections
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from . import asgi, events, metrics
from .codes import TRY_AGAIN_LATER
from .connection import DRAINING, FORBIDDEN, Connection
from .credentials import Credential
from .errors import ClientError, parse_after
from .http import json_error, refusal
from .layers import OVERFLOW
from .topics import Event, Topic


def frame(text: str, event: str, event_id: int | None = None) -> str:
    """Return one SSE event; events with an id carry it, for Last-Event-ID."""
    head = f"id: {event_id}\n" if event_id is not None else ""
    # The text is compact JSON: one line, so one data field.
    return f"{head}event: {event}\ndata: {text}\n\n"


def stream_view(topic: type[Topic]):
    """Return the async view that streams ``topic`` (its URL's keyword arguments name it)."""

    async def view(request: HttpRequest, **kwargs) -> HttpResponse:
        if request.method != "GET":
            metrics.connection_refused("sse", "bad_request")
            response = json_error("method_not_allowed", "Use GET.", 405)
            response["Allow"] = "GET"
            return response
        target = topic.from_route(**kwargs)
        user = await request.auser()
        if not target.can_join(user):
            anonymous = user is None or not user.is_authenticated
            metrics.connection_refused("sse", metrics.NO_IDENTITY if anonymous else FORBIDDEN)
            return refusal(user)
        try:
            after = parse_after(request.headers.get("Last-Event-ID") or request.GET.get("after"))
        except ClientError as exc:
            metrics.connection_refused("sse", "bad_request")
            return json_error(exc.code, exc.detail, exc.http_status)
        stream = TopicStream(
            target, user, Credential.of(request, user), await get_channel_layer().new_channel()
        )
        # Held before it takes anything: if the request is cut from here on (in the view, in
        # the middleware's post-processing), the ASGI call's end still releases it.
        asgi.hold(request, stream.connection)
        refused = await stream.connection.admit()
        if refused == FORBIDDEN:
            return refusal(user)
        if refused == DRAINING:
            return json_error("unavailable", "The server is restarting; retry shortly.", 503)
        if refused is not None:
            return json_error("forbidden", "Too many live connections for this user.", 403)
        # The middleware's queries left a connection with this request's thread, kept
        # until the response ends: give it back now, or every open stream would hold
        # one (a PostgreSQL pool of 10 serves 10 streams). The stream's own queries
        # go through the realtime DB thread (realtime.db).
        await sync_to_async(close_old_connections)()
        return EventStreamResponse(stream.frames(after))

    view.__name__ = view.__qualname__ = f"{topic.__name__}_stream"
    return view


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response, never buffered by a proxy."""

    def __init__(self, frames: AsyncIterator[str]) -> None:
        super().__init__(frames, content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass events through unbuffered


class TopicStream:
    """One open SSE stream: its channel and its connection."""

    def __init__(self, topic: Topic, user, credential: Credential, channel: str) -> None:
        self.layer = get_channel_layer()
        self.channel = channel
        self.connection = Connection(
            topic=topic,
            user=user,
            credential=credential,
            transport="sse",
            layer=self.layer,
            channel=channel,
            end=self.end,
            push=self.push,
            # A stream whose request is cut before its frames start was ended by its client.
            close_code=metrics.CLIENT_GONE,
        )

    def event_frame(self, event: Event) -> str:
        """Return the SSE event of an event dict."""
        return frame(events.encode(event), event["type"], self.connection.topic.event_id(event))

    async def frames(self, after: int | None) -> AsyncIterator[str]:
        """Yield hello, the catch-up, presence, then live events until the connection ends."""
        connection, receiving = self.connection, None
        ended: int | str = metrics.OTHER  # why the stream ended, for the metrics and the log line
        try:
            await connection.subscribe()
            async for item in connection.open(after):
                yield frame(item, "presence") if isinstance(item, str) else self.event_frame(item)
            while True:
                # One receive at a time, never cancelled by the keep-alive timer.
                receiving = receiving or asyncio.ensure_future(self.layer.receive(self.channel))
                done, _ = await asyncio.wait({receiving}, timeout=settings.REALTIME_SSE_KEEPALIVE)
                if not done:
                    yield ": keep-alive\n\n"
                    continue
                message, receiving = receiving.result(), None
                kind = message["type"]
                if kind in (events.CLOSE, OVERFLOW):
                    # The notice's code (4401, 4403, 1012); an overflowed stream: 1013.
                    ended = message.get("code", metrics.OTHER) if kind == events.CLOSE else TRY_AGAIN_LATER
                    return  # an overflowed stream ends; EventSource resumes with Last-Event-ID
                if kind == events.REVALIDATE:
                    connection.revalidate()
                elif kind == events.DELIVER and connection.fresh(message):
                    yield frame(message["text"], message["event"], message.get("id"))
        except (asyncio.CancelledError, GeneratorExit):  # the client went away: the response was cut
            ended = metrics.CLIENT_GONE
            raise
        finally:
            if receiving:
                receiving.cancel()
                # Nobody awaits it now, and a receive may end with an error rather than the
                # cancellation (a read cut mid-way): asyncio would log it as never retrieved.
                receiving.add_done_callback(_take_outcome)
            connection.close_code = ended
            connection.release()

    async def push(self, text: str, event_type: str) -> None:
        """Queue encoded text into this stream (the connection's ``push``)."""
        await self.layer.send(self.channel, {"type": events.DELIVER, "text": text, "event": event_type})

    async def end(self, code: int) -> None:
        """End the stream (SIGTERM, the credential failed its check)."""
        await self.layer.send(self.channel, {"type": events.CLOSE, "code": code})


def _take_outcome(future: asyncio.Future) -> None:
    """Mark a future's outcome as seen (a cancelled receive's error is of no use)."""
    if not future.cancelled():
        future.exception()
