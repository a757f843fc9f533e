"""The room WebSocket consumer: lifecycle, client commands, layer handlers."""

from __future__ import annotations

import contextlib
import json

from django.conf import settings

from . import chat, events, lifecycle, presence, shutdown
from .chat import ClientError
from .delivery import TRY_AGAIN_LATER, DirectDeliveryConsumer
from .resume import LiveFilter
from .services import REDIS_ERRORS


class RoomConsumer(DirectDeliveryConsumer):
    """One socket in a room: ``/ws/rooms/<slug>/``.

    ``scope["user"]`` and ``scope["session"]`` come from Django's middleware
    stack (realtime.handshake), exactly as a view would see them. Published
    events reach the socket without a task per message (realtime.delivery).
    """

    # -- lifecycle -------------------------------------------------------

    async def connect(self) -> None:
        """Called when the handshake passed the middleware stack; refuse or accept."""
        self.user = self.scope["user"]
        self.room = self.scope["url_route"]["kwargs"]["slug"]
        self.joined = self.admitted = False
        self.groups = []
        self.watch = None
        # The request is kept only for the handshake: an idle socket should not hold it.
        request = self.scope.pop("request")
        try:
            after = chat.parse_after(request.GET.get("after"))
        except ClientError:
            after = None
        credential = lifecycle.Credential.of(request, self.user)
        # The request is garbage from here, in reference cycles (the lazy user's closure, the
        # messages storage): break them, so it is freed now and not by the cyclic collector.
        request.__dict__.clear()
        if not chat.can_join(self.user, self.room) or shutdown.draining():
            await self.close()
            return
        limit = settings.REALTIME_MAX_CONNECTIONS_PER_USER
        self.admitted = await presence.admit(user_id=self.user.pk, limit=limit)
        if not self.admitted:
            await self.close()
            return
        # Subscribe before reading history, so nothing falls between the two;
        # live messages already replayed are skipped by id (event_text).
        self.credential = credential
        await self.subscribe([events.room_group(self.room), *self.credential.groups()])
        self.watch = lifecycle.watch(self.credential, self.close)
        shutdown.register(self.restart)
        await self.accept()
        last_id = await chat.room_open(slug=self.room)
        self.live_filter = LiveFilter(last_id if after is None else after)
        await self.send_event(events.hello(user=self.user, room=self.room, last_id=last_id))
        if after is not None:
            await self.replay(after)
        self.joined = True
        await self.send(text_data=await presence.join(room=self.room, user=self.user, deliver=self.emit))
        await self.go_live()

    async def disconnect(self, code: int) -> None:
        """Called when the socket closed, whoever closed it."""
        if getattr(self, "joined", False):
            await presence.leave(room=self.room, user=self.user, deliver=self.emit)
        if getattr(self, "admitted", False):
            presence.release(user_id=self.user.pk)
        if getattr(self, "watch", None):
            self.watch.cancel()
            shutdown.unregister(self.restart)
        # A layer that is down (Redis restarting) forgets the memberships itself (group expiry).
        with contextlib.suppress(*REDIS_ERRORS):
            await self.subscribe([])

    async def subscribe(self, groups: list[str]) -> None:
        """Listen to exactly ``groups`` on the channel layer from now on."""
        self.groups = await events.resubscribe(self.channel_layer, self.channel_name, self.groups, groups)

    async def replay(self, after: int) -> None:
        """Send every stored message of the room after ``after``."""
        async for event in chat.replay(slug=self.room, after=after):
            await self.send_event(event)

    # -- client commands -------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Called with each frame; any ClientError becomes an error event."""
        try:
            await self.command(_decode_frame(text_data, bytes_data))
        except ClientError as exc:
            await self.send_event(events.error(exc.code, exc.detail))

    async def command(self, frame: dict) -> None:
        """Dispatch one decoded client frame on its ``type``."""
        kind = frame.get("type")
        if not isinstance(kind, str):
            raise ClientError("invalid", "Every frame needs a string 'type'.")
        if kind == "message":
            await chat.message_post(user=self.user, slug=self.room, text=frame.get("text"))
        elif kind == "typing":
            await events.publish(
                self.room, events.typing(self.user.get_username()), exclude=self.channel_name
            )
        elif kind == "ping":
            await self.send_event(events.pong())
        else:
            raise ClientError("unknown_type", f"Unknown frame type {kind[:50]!r}.")

    # -- channel-layer handlers ------------------------------------------

    def event_text(self, message: dict) -> str | None:
        """Return a published event's text for this socket, or None if it must skip it."""
        if message.get("exclude") == self.channel_name:
            return None
        message_id = message.get("id")
        if message_id is not None and not self.live_filter.fresh(message_id):
            return None  # sent by replay, or before this connection's starting point
        return message["text"]

    async def restart(self) -> None:
        """The server is stopping: close 1012 so the client reconnects and resumes."""
        await self.close(shutdown.SERVICE_RESTART)

    async def realtime_overflow(self, message: dict) -> None:
        """This socket fell too far behind: close 1013 (try again later); the client resumes by replay."""
        await self.close(TRY_AGAIN_LATER)

    async def realtime_close(self, message: dict) -> None:
        """The credential ended (logout, deactivation, revocation): close with its code."""
        await self.close(message["code"])

    async def realtime_revalidate(self, message: dict) -> None:
        """The password changed: re-check the credential without pausing delivery."""
        lifecycle.spawn_recheck(self.credential, self.close, self.follow_credential)

    async def follow_credential(self) -> None:
        """Re-subscribe after the session moved to a new key (a password change)."""
        await self.subscribe([events.room_group(self.room), *self.credential.groups()])

    async def send_event(self, event: dict) -> None:
        """Encode and send one event to this socket only, after what is already on its way."""
        if event.get("type") == "message":
            self.live_filter.replaying(event["id"])
        await self.emit(events.encode(event))


def _decode_frame(text_data: str | None, bytes_data: bytes | None) -> dict:
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
