"""Under `make serve`, every subscriber gets each event as the same well-formed text frame.

Events are framed once per publish and written to uvicorn's sockets directly
(realtime.directsend): the frames must still be what the ASGI send would
write, for short, non-ASCII and longer texts, in order, to every socket.
A burst stored in one batch leaves in one loop turn, each socket's frames
after its first written together: every frame must arrive whole, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest

from tests.live_client import joined, login, recv_event, send_json, ws_connect
from tests.serve import served

pytestmark = pytest.mark.slow

SENDERS, BURST = 10, 30
ROOM = "/ws/rooms/frames/"
TEXTS = ["hi", "héllo ✓ 😀 中文", "é" * 2000, "x" * 126, "y" * 125]  # 16-bit lengths past 125 bytes


def compact(event: dict) -> str:
    """Return the contract's encoding of an event: compact JSON, UTF-8 kept as is."""
    return json.dumps(event, ensure_ascii=False, separators=(",", ":"))


async def test_every_socket_gets_each_event_as_the_same_text_frame(tmp_path):
    # The burst below is over the default rate limit on purpose.
    with served(tmp_path, REALTIME_RATE_LIMIT="10000/10s") as (server, _log):
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
            # A burst from several sockets at once: stored in batches, each batch leaving in one
            # loop turn, so each socket's frames after its first go out in one write.
            async with contextlib.AsyncExitStack() as stack:
                senders = [
                    await stack.enter_async_context(ws_connect(server, alice, ROOM)) for _ in range(SENDERS)
                ]
                for ws in senders:
                    await joined(ws)

                async def post(index: int, ws) -> None:
                    for n in range(BURST):
                        await send_json(ws, {"type": "message", "text": f"burst {index} {n}"})

                await asyncio.gather(*(post(index, ws) for index, ws in enumerate(senders)))
                # Every socket, the senders too (read, so that they close at once).
                for ws in (first, second, *senders):
                    events = []
                    while len(events) < SENDERS * BURST:
                        event = await recv_event(ws, skip=("presence_diff", "presence"))
                        if event["type"] == "message" and event["text"].startswith("burst "):
                            events.append(event)
                    ids = [e["id"] for e in events]
                    assert ids == sorted(set(ids))  # each once, in id order
                    for index in range(SENDERS):  # each sender's in the order posted
                        mine = [e["text"] for e in events if e["text"].startswith(f"burst {index} ")]
                        assert mine == [f"burst {index} {n}" for n in range(BURST)]
