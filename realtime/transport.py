"""What a transport hands the connection driver (realtime.connection), and what it must supply.

A transport (the WebSocket consumer, the SSE stream) accepts, sends,
receives and closes; everything else about a connection is the driver's.
Client frames reach the driver as ``{"type": FRAME, "text": ..., "bytes": ...}``
and are decoded here, into the errors the wire contract names.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from django.conf import settings

from .errors import ClientError

Event = dict[str, Any]

# The inbound message a transport's receive() returns for a client frame.
FRAME = "realtime.frame"


class Transport(Protocol):
    """What a transport supplies to the driver: accept, send, receive and close."""

    name: str  # "websocket" | "sse"
    # How it ended, first cause wins: a close code, or metrics.CLIENT_GONE; None while live.
    close_code: Any

    async def refuse(self, error: ClientError) -> None:
        """Refuse the connection before accept (WebSocket: 403; SSE: the error's HTTP status)."""

    async def accept(self) -> None:
        """Accept the connection: from here on the client receives events."""

    async def send(self, text: str, event: str, event_id: int | None = None) -> None:
        """Send encoded text now, after what was sent before (the opening, live events)."""

    async def push(self, text: str, event: str) -> None:
        """Queue encoded text behind what is on its way (from any task)."""

    async def receive(self) -> dict | None:
        """Return the next client frame (``FRAME``) or layer message; None once the client is gone."""

    async def close(self, code: int) -> None:
        """Close now with ``code`` (called by the driver)."""

    async def end(self, code: int) -> None:
        """Ask the connection to end with ``code``, from any task (a notice, SIGTERM, a failed check)."""


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
