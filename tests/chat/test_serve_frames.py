"""Under `make serve`, every subscriber gets each event as the same well-formed text frame.

Events are framed once per publish and written to uvicorn's sockets directly
(realtime.directsend): the frames must still be what the ASGI send would
write, for short, non-ASCII and longer texts, in order, to every socket.
"""

from __future__ import annotations

import json

import pytest

from tests.live_client import joined, login, recv_event, send_json, ws_connect
from tests.serve import served

pytestmark = pytest.mark.slow

TEXTS = ["hi", "héllo ✓ 😀 中文", "é" * 2000, "x" * 126, "y" * 125]  # 16-bit lengths past 125 bytes


def compact(event: dict) -> str:
    """Return the contract's encoding of an event: compact JSON, UTF-8 kept as is."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


async def test_every_socket_gets_each_event_as_the_same_text_frame(tmp_path):
    with served(tmp_path) as (server, _log):
        async with (
            login(server, "alice") as alice,
            login(server, "bob") as bob,
            ws_connect(server, alice, "/ws/rooms/frames/") as sender,
            ws_connect(server, bob, "/ws/rooms/frames/") as first,
            ws_connect(server, bob, "/ws/rooms/frames/") as second,
        ):
            for ws in (sender, first, second):
                await joined(ws)
            for text in TEXTS:
                await send_json(sender, {"type": "message", "text": text})
            for ws in (sender, first, second):
                got = []
                for text in TEXTS:
                    event = await recv_event(ws, skip=("presence_diff", "presence"))
                    got.append(event)
                    assert event["type"] == "message" and event["text"] == text
                assert [e["id"] for e in got] == sorted(e["id"] for e in got)
            # The raw frames: what every socket received re-encodes to itself (compact JSON).
            await send_json(sender, {"type": "message", "text": "ünïcode"})
            raw = []
            for ws in (sender, first, second):
                while True:
                    frame = await ws.recv()
                    assert isinstance(frame, str)  # a text frame, never binary
                    if json.loads(frame)["type"] == "message":
                        raw.append(frame)
                        break
            assert raw[0] == raw[1] == raw[2] == compact(json.loads(raw[0]))
