"""Server-Sent Events for any topic: the same events as its WebSocket, one per SSE event.

``stream_view(MyTopic)`` is an async Django view, so it passes through
``MIDDLEWARE`` like any other. The connection driver (realtime.connection)
runs the stream's life in a task of its own; this module supplies the
transport: the driver's refusal or acceptance decides the response, and
what the driver sends becomes the response body. The stream holds no
thread and no database connection while open: it waits on its own
channel-layer channel, which receives the topic's events, the user's and
the credential's notices, and this stream's presence diffs. If the
request is cut before the body starts, the ASGI wrapper (realtime.asgi)
cancels the driver, whose ``finally`` gives everything back.
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
from .connection import Connection
from .credentials import Credential
from .errors import ClientError, parse_after
from .http import json_error
from .topics import Topic

END = None  # the last item of a stream's body


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
        try:
            after = parse_after(request.headers.get("Last-Event-ID") or request.GET.get("after"))
        except ClientError as exc:
            metrics.connection_refused("sse", "bad_request")
            return json_error(exc.code, exc.detail, exc.http_status)
        user = await request.auser()
        layer = get_channel_layer()
        stream = EventStream(layer, await layer.new_channel())
        connection = Connection(
            topic=topic.from_route(**kwargs),
            user=user,
            credential=Credential.of(request, user),
            transport=stream,
            layer=layer,
            channel=stream.channel,
        )
        # Held from the start: if the request is cut from here on (in the view, in the
        # middleware's post-processing), the ASGI call's end still cancels the driver.
        driver = asyncio.ensure_future(connection.run(after))
        driver.add_done_callback(stream.driver_ended)
        asgi.hold(request, driver)
        refusal = await stream.decided
        if refusal is not None:
            return json_error(refusal.code, refusal.detail, refusal.http_status)
        # The middleware's queries left a connection with this request's thread, kept
        # until the response ends: give it back now, or every open stream would hold
        # one (a PostgreSQL pool of 10 serves 10 streams). The stream's own queries
        # go through the realtime DB thread (realtime.db).
        await sync_to_async(close_old_connections)()
        return EventStreamResponse(stream.body(driver))

    view.__name__ = view.__qualname__ = f"{topic.__name__}_stream"
    return view


class EventStreamResponse(StreamingHttpResponse):
    """A ``text/event-stream`` response, never buffered by a proxy."""

    def __init__(self, frames: AsyncIterator[str]) -> None:
        super().__init__(frames, content_type="text/event-stream")
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # nginx: pass events through unbuffered


class EventStream:
    """The SSE transport of one stream: its channel, its decision, and its body."""

    name = "sse"  # the transport's name in metrics and logs

    def __init__(self, layer, channel: str) -> None:
        self.layer = layer
        self.channel = channel
        # Set once: None when accepted, the ClientError when refused.
        self.decided: asyncio.Future[ClientError | None] = asyncio.get_running_loop().create_future()
        # What the driver sends, taken by the body one at a time: a slow client holds the
        # driver, so its channel fills and overflows (1013) as a WebSocket's would.
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue(maxsize=1)
        self._receiving: asyncio.Future | None = None
        self._closed = False  # nothing more comes from the channel
        self._finished = False  # the driver has ended: the body ends once it took what is queued
        self.close_code: int | str | None = None

    # -- the response body -----------------------------------------------------

    async def body(self, driver: asyncio.Future) -> AsyncIterator[str]:
        """Yield what the driver sends until it ends the stream or the client goes away."""
        try:
            while not (self._finished and self.outbox.empty()):
                item = await self.outbox.get()
                if item is END:
                    return
                yield item
        except (asyncio.CancelledError, GeneratorExit):  # the client went away: the response was cut
            self._ended(metrics.CLIENT_GONE)
            raise
        finally:
            driver.cancel()  # a no-op once the driver has ended the stream

    def driver_ended(self, driver: asyncio.Future) -> None:
        """Called when the driver has ended: decide if it never did, and let the body finish."""
        if not self.decided.done():
            self.decided.set_result(ClientError("unavailable", "Try again shortly."))
        self._finished = True
        self._stop_receiving()
        if self.outbox.empty():
            self.outbox.put_nowait(END)

    # -- the transport (realtime.connection.Transport) -------------------------

    async def refuse(self, error: ClientError) -> None:
        """Answer with the error's status instead of a stream."""
        if not self.decided.done():
            self.decided.set_result(error)

    async def accept(self) -> None:
        """Start the stream: the view answers 200 with the body."""
        self.decided.set_result(None)

    async def send(self, text: str, event: str, event_id: int | None = None) -> None:
        """Hand one SSE event to the body, once it has taken the one before."""
        await self.outbox.put(frame(text, event, event_id))

    async def push(self, text: str, event: str) -> None:
        """Queue encoded text into this stream's channel, behind what is on its way."""
        await self.layer.send(self.channel, {"type": events.DELIVER, "text": text, "event": event})

    async def receive(self) -> dict | None:
        """Return the next message of this stream's channel, sending keep-alives while none comes."""
        while not self._closed:
            # One receive at a time, never cancelled by the keep-alive timer.
            receiving = self._receiving or asyncio.ensure_future(self.layer.receive(self.channel))
            self._receiving = receiving
            done, _ = await asyncio.wait({receiving}, timeout=settings.REALTIME_SSE_KEEPALIVE)
            if done:
                self._receiving = None
                return receiving.result()
            await self.outbox.put(": keep-alive\n\n")
        return None

    async def close(self, code: int) -> None:
        """End the stream: EventSource reconnects and resumes with Last-Event-ID."""
        self._ended(code)
        self._finished = True
        if not self.decided.done():  # not accepted yet (an error while admitting)
            self.decided.set_result(ClientError("unavailable", "Try again shortly."))
            return
        await self.outbox.put(END)

    async def end(self, code: int) -> None:
        """Ask the stream to end with ``code`` from any task (through its channel, in order)."""
        await self.layer.send(self.channel, {"type": events.CLOSE, "code": code})

    def _ended(self, code) -> None:
        """Note how the stream ended (first cause wins); stop receiving."""
        self._closed = True
        self._stop_receiving()
        if self.close_code is None:
            self.close_code = code

    def _stop_receiving(self) -> None:
        """Cancel the receive under way, if any: nobody will read this channel again."""
        receiving, self._receiving = self._receiving, None
        if receiving is not None:
            receiving.cancel()
            # Nobody awaits it now, and a receive may end with an error rather than the
            # cancellation (a read cut mid-way): asyncio would log it as never retrieved.
            receiving.add_done_callback(_take_outcome)


def _take_outcome(future: asyncio.Future) -> None:
    """Mark a future's outcome as seen (a cancelled receive's error is of no use)."""
    if not future.cancelled():
        future.exception()
