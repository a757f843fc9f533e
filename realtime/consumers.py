"""The WebSocket consumer of every topic: lifecycle, client frames, control notices.

An app routes a URL to ``TopicConsumer.as_asgi(topic=MyTopic)``; the topic
(realtime.topics) says who may join, what comes first and what frames do.
``scope["user"]`` and ``scope["session"]`` come from Django's middleware
stack (realtime.handshake), exactly as a view would see them. Published
events reach the socket without a task per message (realtime.delivery).
"""

from __future__ import annotations

import json

from django.conf import settings

from . import events, metrics
from .codes import TRY_AGAIN_LATER
from .connection import Connection
from .credentials import Credential
from .delivery import DirectDeliveryConsumer
from .errors import ClientError, parse_after
from .topics import Event, Topic


class TopicConsumer(DirectDeliveryConsumer):
    """One socket subscribed to one topic: ``TopicConsumer.as_asgi(topic=RoomTopic)``."""

    topic: type[Topic] = Topic  # set per route by as_asgi(topic=...)
    connection: Connection | None = None

    def __init__(self, *args, topic: type[Topic] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if topic is not None:
            self.topic = topic

    async def __call__(self, scope, receive, send) -> None:
        """Called by the server for each socket; gives back all the connection took, however it ends."""
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self.connection is not None:
                # The code the socket ended with (realtime.delivery); none: an exception, a cancellation.
                self.connection.close_code = metrics.OTHER if self.close_code is None else self.close_code
                self.connection.release()

    # -- lifecycle -------------------------------------------------------

    async def connect(self) -> None:
        """Called when the handshake passed the middleware stack; refuse or accept, then catch up."""
        # The request is kept only for the handshake: an idle socket should not hold it.
        request = self.scope.pop("request")
        try:
            after = parse_after(request.GET.get("after"))
        except ClientError:
            after = None
        user = self.scope["user"]
        credential = Credential.of(request, user)
        # The request is garbage from here, in reference cycles (the lazy user's closure, the
        # messages storage): break them, so it is freed now and not by the cyclic collector.
        request.__dict__.clear()
        self.connection = connection = Connection(
            topic=self.topic.from_route(**self.scope["url_route"]["kwargs"]),
            user=user,
            credential=credential,
            transport="websocket",
            layer=self.channel_layer,
            channel=self.channel_name,
            end=self.close,
            push=self.push,
        )
        if await connection.admit() is not None:
            await self.close()  # before accept: the server answers 403
            return
        # Subscribe before catching up, so nothing falls between the two;
        # live events already caught up are skipped by id (event_text).
        await connection.subscribe()
        await self.accept()
        async for item in connection.open(after):
            await (self.emit(item) if isinstance(item, str) else connection.send(item))
        await self.go_live()

    # -- client frames ---------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame; any ClientError becomes an error event, and the socket stays open."""
        try:
            await self.command(decode_frame(text_data, bytes_data))
        except ClientError as exc:
            metrics.client_error("websocket", exc.code)
            await self.connection.send(events.error(exc.code, exc.detail))

    async def command(self, frame: Event) -> None:
        """Dispatch one decoded client frame on its ``type``: ``ping`` here, the rest to the topic."""
        kind = frame.get("type")
        if not isinstance(kind, str):
            raise ClientError("invalid", "Every frame needs a string 'type'.")
        if kind == "ping":
            await self.connection.send(events.pong())
            return
        handler = self.connection.topic.handler_for(kind)
        if handler is None:
            raise ClientError("unknown_type", f"Unknown frame type {kind[:50]!r}.")
        await handler(self.connection, frame)

    # -- channel-layer messages ------------------------------------------

    def event_text(self, message: dict) -> str | None:
        """Return a published event's text for this socket, or None if it must skip it."""
        return message["text"] if self.connection.fresh(message) else None

    async def realtime_overflow(self, message: dict) -> None:
        """This socket fell too far behind: close 1013 (try again later); the client resumes."""
        await self.close(TRY_AGAIN_LATER)

    async def realtime_close(self, message: dict) -> None:
        """The credential ended (logout, deactivation, revocation): close with its code."""
        await self.close(message["code"])

    async def realtime_revalidate(self, message: dict) -> None:
        """The password changed: re-check the credential without pausing delivery."""
        self.connection.revalidate()

    async def push(self, text: str, event_type: str) -> None:
        """Queue encoded text behind what is on its way to this socket (the connection's ``push``)."""
        await self.emit(text)


def decode_frame(text_data: str | None, bytes_data: bytes | None) -> Event:
    """Return a client frame as a dict, or raise the ClientError the contract names."""
    if text_data is None:
        raise ClientError("binary_unsupported", "Send JSON text frames, not binary.")
    max_frame = settings.REALTIME_MAX_FRAME
    if len(text_data) > max_frame or (len(text_data) * 4 > max_frame and len(text_data.encode()) > max_frame):
        raise ClientError("too_large", f"Frames are limited to {max_frame} bytes.")
    try:
        frame = json.loads(text_data)
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
        raise ClientError("bad_json", "The frame is not valid JSON.") from None
    if not isinstance(frame, dict):
        raise ClientError("bad_json", "The frame must be a JSON object.")
    return frame
