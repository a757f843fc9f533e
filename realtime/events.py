"""The event bus: the core's group names and event shapes, and publishing.

Views, consumers, the SSE stream, the admin, management commands and
background tasks publish to a topic (realtime.topics) through
:func:`publish`; each event is JSON-encoded once per publish and the encoded
text travels through the channel layer to every subscriber. An app keeps
the shapes of its own events in one module of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from . import bus, directsend, metrics
from .services import LAYER_ERRORS
from .topics import Topic, user_public

__all__ = ["user_public"]  # re-exported: events carry users in this shape

logger = logging.getLogger(__name__)

# The layer message type that carries an encoded event to a subscriber
# (consumer handler: realtime_event).
DELIVER = "realtime.event"


def user_group(user_id: int) -> str:
    """Return the channel-layer group of every live connection of a user."""
    return f"user.{user_id}"


def session_group(session_key: str) -> str:
    """Return the group of the connections opened with one session."""
    # Hashed: session keys are credentials and must not sit in Redis key names.
    return "session." + hashlib.sha256(session_key.encode()).hexdigest()[:40]


def token_group(token_id: int) -> str:
    """Return the group of the connections opened with one API token."""
    return f"token.{token_id}"


# Control notices, handled by every connection (WebSocket and SSE) itself.
CLOSE = "realtime.close"  # {"code": 4401 | 4403}: end the connection now
REVALIDATE = "realtime.revalidate"  # check the credential again (password changed)


def encode(event: dict[str, Any]) -> str:
    """Return the wire text of an event (compact JSON, UTF-8 kept as is)."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


def presence(users: list[str]) -> dict[str, Any]:
    """Return the full presence event sent once after hello."""
    return {"type": "presence", "users": sorted(users)}


def presence_diff(*, joins: list[str], leaves: list[str]) -> dict[str, Any]:
    """Return a coalesced presence change."""
    return {"type": "presence_diff", "joins": sorted(joins), "leaves": sorted(leaves)}


def pong() -> dict[str, Any]:
    """Return the answer to a client's ping."""
    return {"type": "pong"}


def error(code: str, detail: str) -> dict[str, Any]:
    """Return the error event sent for a bad frame (the wire contract (docs/contract.md), section 3)."""
    return {"type": "error", "code": code, "detail": detail}


def _delivery(
    event: dict[str, Any], event_id: int | None = None, exclude: str | None = None
) -> dict[str, Any]:
    """Return the channel-layer message that carries ``event``, encoded once."""
    # "id" lets a subscriber skip an event it already sent by catch-up;
    # "event" lets SSE name the event without decoding the text again;
    # SENT_AT times the fan-out (realtime.metrics, read once per group_send).
    message = {
        "type": DELIVER,
        "text": encode(event),
        "event": event["type"],
        "id": event_id,
        "exclude": exclude,
    }
    if metrics.enabled:
        message[metrics.SENT_AT] = time.time()
    return message


async def publish(topic: Topic, event: dict[str, Any], *, exclude: str | None = None) -> None:
    """Send ``event`` to every subscriber of ``topic``, except the channel ``exclude``."""
    message = _delivery(event, topic.event_id(event), exclude)
    metrics.published(topic.kind)
    if not bus.serving and bus.unserved():  # a worker's loop: the server reads the event table
        await bus.awrite(topic.group, message)
        return
    for attempt in (1, 2):
        try:
            await get_channel_layer().group_send(topic.group, message)
            return
        except LAYER_ERRORS as exc:
            metrics.layer_error("publish")
            if attempt == 1:
                # Right after a Redis restart the pool may hand out a dead
                # connection once; subscribers that reconnected would miss
                # the event for good. Retry once (replayed ids are skipped).
                continue
            # The layer is down (Redis restarting). Messages are stored before
            # they are published, so clients recover them by replay on reconnect.
            logger.error(
                "channel layer unavailable; %s event to %s not delivered live: %s",
                event["type"],
                topic,
                exc,
            )


async def publish_many(topic: Topic, events: list[dict[str, Any]]) -> None:
    """Publish ``events`` to ``topic`` in order; two or more reach each socket in one write.

    Two or more are framed under realtime.directsend's ``batch()`` (under
    ``make serve``'s uvicorn; elsewhere it changes nothing): every frame waits
    for the last event, so a lone event is published as it is, at once. An
    event whose publish fails is logged and the others still go (stored
    events reach clients by replay).
    """
    with directsend.batch() if len(events) > 1 else contextlib.nullcontext():
        for event in events:
            try:
                await publish(topic, event)
            except Exception:
                logger.exception("publish of a %s event to %s failed", event.get("type"), topic)


async def publish_to_user(user_id: int, event: dict[str, Any]) -> None:
    """Send ``event`` to every live connection of one user, in any topic."""
    metrics.published("user")
    await _group_send(user_group(user_id), _delivery(event))


async def notify(group: str, notice: str, **fields: Any) -> None:
    """Send a control notice (CLOSE, REVALIDATE) to every connection in ``group``."""
    await _group_send(group, {"type": notice, **fields})


async def _group_send(group: str, message: dict[str, Any]) -> None:
    if not bus.serving and bus.unserved():
        await bus.awrite(group, message)
    else:
        await get_channel_layer().group_send(group, message)


def notify_sync(group: str, notice: str, **fields: Any) -> None:
    """Send a control notice from sync code (signals, commands) once the caller's transaction commits."""
    _send_sync(group, {"type": notice, **fields})


def publish_sync(topic: Topic, event: dict[str, Any]) -> None:
    """Publish from sync code (admin actions, signals, commands) once the caller's transaction commits.

    Inside ``transaction.atomic()`` the event is delivered if and only if
    the transaction commits: on a bus through the event table its row is
    written in that transaction, on the others it is sent on commit.
    """
    if bus.writes_from_sync():
        metrics.published(topic.kind)
        bus.write(topic.group, _delivery(event, topic.event_id(event)))
    else:
        bus.after_commit(lambda: async_to_sync(publish)(topic, event))


def _send_sync(group: str, message: dict[str, Any]) -> None:
    if bus.writes_from_sync():
        bus.write(group, message)
    else:
        bus.after_commit(lambda: async_to_sync(get_channel_layer().group_send)(group, message))


async def resubscribe(layer, channel: str, current: list[str], wanted: list[str]) -> list[str]:
    """Make ``channel`` a member of exactly the groups ``wanted`` (it is in ``current``); return them."""
    for group in set(current) - set(wanted):
        await layer.group_discard(group, channel)
    for group in set(wanted) - set(current):
        await layer.group_add(group, channel)
    return wanted
