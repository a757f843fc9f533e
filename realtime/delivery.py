"""Deliver channel-layer events to a WebSocket without a task per message.

Channels' consumer loop (``await_many_dispatch``) starts a task and an
``asyncio.wait`` for every message, and the layer wakes one receiver per
member: for a topic of N sockets that is N tasks and N wake-ups per event.
With a layer that supports sinks (realtime.layers), ``group_send`` instead
hands the encoded event to each consumer on its own stack and the consumer
writes it to its socket at once, like a raw ASGI broadcast loop. With any
other layer (Redis) one reader task per socket takes its messages.

Order and the no-silent-loss rule hold:

* The sink takes a message only while nothing is queued or being sent on
  that socket. Otherwise the layer queues it, with its capacity and overflow
  rules, and a drain task sends the queue in order.
* The ASGI ``send`` is run eagerly. It normally completes without waiting
  (the server writes to its transport). When it must wait (uvicorn pauses
  writing above its transport's high-water mark: a slow reader), it finishes
  in a task and later events queue in the layer. So a reader that falls
  behind fills a bounded queue and is closed with 1013 (try again later):
  what the server holds for it is bounded by the transport's high-water
  mark and the layer's capacity (bench/README.md, Slow readers).

Channels' ``dispatch`` also hops to a thread before every message to close
stale database connections; here that happens once, when the socket closes
(as Channels does then too), and no task is started per received frame. The project's own DB work goes through
realtime.db, which checks its connection on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable

from channels.db import aclose_old_connections
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from . import directsend, metrics
from .codes import TRY_AGAIN_LATER
from .eager import send_eagerly
from .events import DELIVER
from .transport import FRAME

logger = logging.getLogger(__name__)
# How long a socket the server closed waits for the client's close frame.
CLOSE_WAIT_SECONDS = 10.0


class SinkDeliveryConsumer(AsyncWebsocketConsumer):
    """A WebSocket consumer that takes published events on the publisher's stack.

    The socket's life is driven from :meth:`serve` (realtime.consumers runs
    the connection driver there). What must come first is sent while
    connecting; the first :meth:`receive` goes live: from then on layer
    messages of type ``realtime.event`` go through :meth:`event_text` to the
    socket, other layer messages to :meth:`notice`, and the consumer's own
    later sends go through :meth:`emit`, in order.
    """

    async def __call__(self, scope, receive, send) -> None:
        """Called by the server for each socket: serve it, then let go of everything it used."""
        self.scope = scope
        self.base_receive = receive
        # uvicorn's sans-I/O protocol, when events can be written to it directly (realtime.directsend).
        self._direct = directsend.target_of(send)
        if self._direct is None:
            self.base_send = send
        else:
            # Every other send (accept, close, a send that must wait) goes after the frames
            # written directly this turn.
            self._asgi_send = send
            self.base_send = self._send_after_direct
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self._sink = hasattr(self.channel_layer, "attach")
        self._live = False  # the first receive() ran: events flow
        self._open = False  # the sink may write now: nothing queued or in flight
        self._done = False  # close sent or client gone: nothing more goes out
        self._disconnected = False  # the server said websocket.disconnect
        self._task: asyncio.Task | None = None  # the drain task, or the reader task (no sink)
        # How the socket ended, first cause wins: the code close() sent, the client's
        # disconnect code, or metrics.CLIENT_GONE when a send found the client gone.
        self.close_code: int | str | None = None
        # Sinks run in the publisher's context; tasks of this socket get its own.
        self._context = contextvars.copy_context()
        if self._sink:
            self.channel_layer.attach(self.channel_name, self._offer)
        try:
            if (await receive())["type"] == "websocket.connect":  # else gone before the handshake
                # Awaited here, not from a coroutine of ours: one suspended frame less per socket.
                await self.driver()
            if self._done and not self._disconnected and self.close_code != metrics.CLIENT_GONE:
                # Closed by the server: the client's close frame (or its absence) ends the socket.
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._until_disconnect(), CLOSE_WAIT_SECONDS)
        finally:
            self._done, self._open = True, False
            if self._sink:
                self.channel_layer.detach(self.channel_name)
            if self._task:
                self._task.cancel()
            # As Channels does: release what async ORM calls of this socket's handlers
            # left in asgiref's shared thread (once per socket, not per message).
            await aclose_old_connections()

    def driver(self) -> Awaitable[None]:
        """Return what runs the socket's life once ``websocket.connect`` came (a coroutine)."""
        raise NotImplementedError

    async def receive(self) -> dict | None:
        """Return the next client frame (``FRAME``, with ``text`` or ``bytes``); None once it is gone."""
        if not self._live:
            await self._go_live()
        while not (self._disconnected or self.close_code == metrics.CLIENT_GONE):
            message = await self.base_receive()
            if message["type"] == "websocket.receive":
                message["type"] = FRAME
                return message
            if message["type"] == "websocket.disconnect":
                self._disconnected = self._done = True
                if self.close_code is None:
                    self.close_code = message.get("code", 1005)
        return None

    def _send_after_direct(self, message: dict) -> Awaitable[None]:
        """The ASGI send, after the frames queued for this socket by directsend."""
        directsend.flush(self._direct)
        return self._asgi_send(message)

    async def _until_disconnect(self) -> None:
        while not self._disconnected:
            await self.receive()

    def event_text(self, message: dict) -> str | None:
        """Return the text to send for a ``realtime.event`` message, or None to skip it."""
        return message["text"]

    async def notice(self, message: dict) -> None:
        """Called with a layer message other than an event (a control notice), in order."""

    async def _go_live(self) -> None:
        """Send what queued while connecting, then stream events as they come."""
        self._live = True
        if self._sink:
            await self._drain()
        else:
            self._task = self._spawn(self._read())

    async def emit(self, text: str) -> None:
        """Send ``text`` after everything already on its way to this socket (with a sink: without waiting)."""
        if self._done:
            return
        if self._open:
            self._write(text)
        elif self._sink and self._live:
            # Behind the queue, in order; a full queue means this socket is about to be closed 1013.
            with contextlib.suppress(ChannelFull):
                await self.channel_layer.send(self.channel_name, {"type": DELIVER, "text": text})
        else:
            try:
                await self.base_send({"type": "websocket.send", "text": text})
            except OSError as exc:  # the client is gone (uvicorn: ClientDisconnected)
                self._gone(exc)

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close the socket (before accept: refuse the handshake); later events are dropped."""
        if self._done:
            return
        self._done, self._open = True, False
        sent = 1000 if code is None or isinstance(code, bool) else code
        if self.close_code is None:
            self.close_code = sent
        try:
            await super().close(code, reason)
        except Exception as exc:  # the client is gone already
            logger.debug("close on a gone socket: %s", exc)
            if self.close_code == sent:
                self.close_code = metrics.CLIENT_GONE

    # -- internals -----------------------------------------------------------

    def _offer(self, message: dict) -> bool:
        """The layer's sink: take a message now if nothing is ahead of it; return whether taken."""
        if self._done:
            return True  # closing: nothing more goes out; the client resumes by replay
        if not self._open:
            return False  # connecting, or older messages are queued or in flight
        if message["type"] != DELIVER:  # a control message: handled in a task, in order
            self._open = False
            self._task = self._spawn(self._drain())
            return False
        text = self.event_text(message)
        if text is not None:
            self._write(text)
        return True

    def _write(self, text: str) -> None:
        """Write to the socket now; if the transport is full, finish in a task and queue what follows."""
        try:
            if self._direct is not None and directsend.write(self._direct, text):
                return
            rest = send_eagerly(self.base_send, {"type": "websocket.send", "text": text})
        except Exception as exc:  # the client is gone (uvicorn: ClientDisconnected, an OSError)
            self._gone(exc)
            return
        if rest is not None:
            self._open = False
            self._task = self._spawn(self._drain(rest))

    def _gone(self, exc: BaseException) -> None:
        """A send found the client gone: nothing more goes out."""
        log = logger.debug if isinstance(exc, OSError) else logger.warning
        log("send to %s failed, nothing more goes out: %r", self.channel_name, exc)
        self._done, self._open = True, False
        if self.close_code is None:
            self.close_code = metrics.CLIENT_GONE

    def _spawn(self, coro) -> asyncio.Task:
        """Start a task of this socket, in this socket's context (not the publisher's)."""
        return asyncio.get_running_loop().create_task(coro, context=self._context.copy())

    async def _drain(self, rest: Awaitable[None] | None = None) -> None:
        """Finish a blocked send, then send what queued meanwhile, in order; then take events inline."""
        layer, channel = self.channel_layer, self.channel_name
        try:
            if rest is not None:
                await rest
            while not self._done and (message := layer.receive_nowait(channel)) is not None:
                await self._handle(message)
        except OSError as exc:  # the client is gone (uvicorn: ClientDisconnected)
            logger.debug("drain of a gone socket: %s", exc)
            self._done = True
            if self.close_code is None:
                self.close_code = metrics.CLIENT_GONE
        except Exception:
            logger.exception("delivery to %s failed; closing it so the client resumes", channel)
            await self.close(TRY_AGAIN_LATER)
        finally:
            if self._task is asyncio.current_task():
                self._task = None  # done: hold nothing for an idle socket
        # No await since the queue was found empty: nothing can have slipped in between.
        self._open = not self._done

    async def _read(self) -> None:
        """Without a sink: take this socket's layer messages one by one (one task per socket)."""
        try:
            while not self._done:
                await self._handle(await self.channel_layer.receive(self.channel_name))
        except asyncio.CancelledError:
            raise
        except Exception:
            if self._done:
                return  # the client is gone
            # The layer is down (Redis restarting): close with 1013 (try again later),
            # so the client reconnects and resumes by replay.
            metrics.layer_error("receive")
            logger.warning("channel layer receive failed; closing %s", self.channel_name, exc_info=True)
            await self.close(TRY_AGAIN_LATER)

    async def _handle(self, message: dict) -> None:
        """Send an event, or run the handler of a control message."""
        if message["type"] == DELIVER:
            text = self.event_text(message)
            if text is not None and not self._done:
                await self.base_send({"type": "websocket.send", "text": text})
        else:
            await self.notice(message)
