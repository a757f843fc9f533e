"""The WebSocket transport of every topic: accept, send, receive and close, nothing more.

An app routes a URL to ``TopicConsumer.as_asgi(topic=MyTopic)``; the topic
(realtime.topics) says who may join, what comes first and what frames do,
and the connection driver (realtime.connection) runs the socket's life.
``scope["user"]`` and ``scope["session"]`` come from Django's middleware
stack (realtime.handshake), exactly as a view would see them. Published
events reach the socket without a task per message (realtime.delivery).
"""

from __future__ import annotations

from .connection import Connection
from .credentials import Credential
from .delivery import SinkDeliveryConsumer
from .errors import ClientError, parse_after
from .topics import Topic


class TopicConsumer(SinkDeliveryConsumer):
    """One socket subscribed to one topic: ``TopicConsumer.as_asgi(topic=MyTopic)``."""

    name = "websocket"  # the transport's name in metrics and logs
    topic: type[Topic] = Topic  # set per route by as_asgi(topic=...)
    connection: Connection | None = None

    def __init__(self, *args, topic: type[Topic] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if topic is not None:
            self.topic = topic

    def driver(self):
        """Called once the handshake passed the middleware stack: return the connection's driver."""
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
        self.connection = Connection(
            topic=self.topic.from_route(**self.scope["url_route"]["kwargs"]),
            user=user,
            credential=credential,
            transport=self,
            layer=self.channel_layer,
            channel=self.channel_name,
        )
        return self.connection.run(after)

    # -- the transport (realtime.connection.Transport) -------------------------

    async def refuse(self, error: ClientError) -> None:
        """Close before accept: the server answers the handshake with 403."""
        await self.close()

    async def send(self, text: str, event: str, event_id: int | None = None) -> None:
        """Send encoded text after what is on its way to this socket."""
        await self.emit(text)

    async def push(self, text: str, event: str) -> None:
        """Queue encoded text behind what is on its way to this socket."""
        await self.emit(text)

    async def end(self, code: int) -> None:
        """End the socket with ``code`` from any task."""
        await self.close(code)

    # -- channel-layer messages ------------------------------------------

    def event_text(self, message: dict) -> str | None:
        """Return a published event's text for this socket, or None if it must skip it."""
        return message["text"] if self.connection.fresh(message) else None

    async def notice(self, message: dict) -> None:
        """A control notice (close, revalidate, overflow): the connection handles it."""
        await self.connection.notice(message)
