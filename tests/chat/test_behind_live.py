"""A reader that falls behind in time, on `make serve`'s uvicorn: closed 1013, it resumes with nothing lost.

REALTIME_MAX_DELIVERY_LAG bounds how long an event may wait for a socket
that stopped reading (docs/contract.md: 1013, reconnect, resume by replay);
the others keep receiving meanwhile.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.live_client import cookie_header, joined, login, recv_json, send_json
from tests.serve import served

pytestmark = pytest.mark.slow

ROOM = "behind"
# Large events fill the stalled reader's socket buffers (megabytes here) in few messages, so a
# bound reached by queue length (1,000 events) and one reached by time tell apart.
PAD = "x" * 50_000
BURST = 10


def stalled_socket(server, client: httpx.AsyncClient, path: str):
    """Open a WebSocket with small receive buffers that stops reading when its one-frame queue is full."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.connect(("127.0.0.1", server.port))
    return connect(
        server.ws_url + path,
        sock=sock,
        origin=server.url,
        additional_headers=cookie_header(client),
        max_queue=1,
        open_timeout=5,
        close_timeout=2,
    )


async def overflows(client: httpx.AsyncClient) -> float:
    """Return the server's count of sockets told they fell behind (its /metrics)."""
    text = (await client.get("/metrics")).text
    lines = [line for line in text.splitlines() if line.startswith("realtime_slow_consumer_overflows_total")]
    return sum(float(line.split()[-1]) for line in lines)


async def read_all(ws, into: list[int], until: asyncio.Event) -> None:
    """Collect the ids of message events until ``until`` is set and nothing came for a second."""
    while True:
        try:
            event = await recv_json(ws, timeout=1)
        except TimeoutError:
            if until.is_set():
                return
            continue
        if event["type"] == "message":
            into.append(event["id"])


async def read_until_closed(ws) -> tuple[list[int], int | None]:
    """Read message ids until the server closes the socket; return them and the close code."""
    ids: list[int] = []
    try:
        while True:
            event = await recv_json(ws, timeout=30)
            if event["type"] == "message":
                ids.append(event["id"])
    except ConnectionClosed as closed:
        return ids, closed.rcvd.code if closed.rcvd else None


def open_socket(server, client: httpx.AsyncClient, path: str):
    """Open a WebSocket as a tab of ``client`` that reads as it should."""
    return connect(server.ws_url + path, origin=server.url, additional_headers=cookie_header(client))


async def post_until_told(writer, local: httpx.AsyncClient, before: float) -> list[int]:
    """Post large messages, in step with their echoes, until the server told a socket it fell behind."""
    posted: list[int] = []
    deadline = time.monotonic() + 60
    while await overflows(local) == before:
        assert time.monotonic() < deadline, "the stalled reader was never told"
        for n in range(BURST):
            await send_json(writer, {"type": "message", "text": f"{n}:{PAD}"})
        target = len(posted) + BURST
        while len(posted) < target:
            event = await recv_json(writer, timeout=30)
            if event["type"] == "message":
                posted.append(event["id"])
    return posted


async def test_a_reader_behind_in_time_is_closed_1013_and_resumes_with_nothing_lost(tmp_path):
    env = {"REALTIME_MAX_DELIVERY_LAG": "1", "REALTIME_RATE_LIMIT": "1000000/1s", "CHAT_MAX_TEXT": "60000"}
    path = f"/ws/rooms/{ROOM}/"
    with served(tmp_path, **env) as (server, _log):
        async with (
            login(server, "alice") as alice,
            login(server, "bob") as bob,
            httpx.AsyncClient(base_url=server.url) as local,
        ):
            before = await overflows(local)
            async with (
                stalled_socket(server, bob, path) as slow,
                open_socket(server, alice, path) as writer,
                open_socket(server, alice, path) as watcher,
            ):
                for ws in (slow, writer, watcher):
                    await joined(ws)
                # From here on the slow socket reads nothing: its buffers fill, then its queue.
                watched: list[int] = []
                done = asyncio.Event()
                watching = asyncio.create_task(read_all(watcher, watched, done))
                posted = await post_until_told(writer, local, before)
                done.set()
                await watching
                # Reading again: what was on its way, in order, then the close.
                received, code = await read_until_closed(slow)
            assert code == 1013
            assert received == sorted(received) and len(received) < len(posted)
            # Told by the time bound, long before its queue reached the layer's capacity (1,000 events).
            assert len(posted) < 1000
            # Resume from the last id seen: the rest, once, in order.
            after = received[-1] if received else 0
            async with open_socket(server, bob, f"{path}?after={after}") as again:
                hello = await recv_json(again)
                replayed = []
                while (event := await recv_json(again))["type"] != "presence":
                    replayed.append(event["id"])
            assert hello["type"] == "hello"
            assert received + replayed == posted
            # The other reader was never held back: it got every message.
            assert watched == posted
