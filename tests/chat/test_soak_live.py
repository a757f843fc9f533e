"""Soak: hundreds of clients join, chat and drop at random against `make serve`, then all is given back.

For a bounded time, clients of many users connect to a few rooms, send
messages, typing and pings, and leave: cleanly, by dropping the TCP
connection, or in the middle of their opening. Afterwards the server holds
no connection (/healthz), no one is present in any room, every message a
sender saw echoed is stored, and the server's memory is back near what it
was after a warm-up round of the same load (a leak would grow it per client).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from tests.live_client import bearer
from tests.serve import served

pytestmark = pytest.mark.slow

USERS = 20
CLIENTS_PER_USER = 15  # 300 clients; the per-user cap is 20
ROOMS = 5
SOAK_SECONDS = 30
WARM_UP_SECONDS = 15
# RSS the server may keep above its warmed-up baseline: allocator slack, not a leak.
RSS_SLACK_BYTES = 60 * 1024 * 1024


def server_pid(port: int) -> int:
    """Return the pid of the uvicorn serving ``port`` (make serve execs it)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(b"uvicorn" in a for a in args) and str(port).encode() in args:
            return int(proc.name)
    raise AssertionError(f"no uvicorn process serves port {port}")


def rss(pid: int) -> int:
    """Return the resident memory of ``pid`` in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Swarm:
    """Clients that join, chat and drop at random until ``stop`` is set."""

    def __init__(self, ws_url: str, tokens: list[str], rooms: list[str], seed: int) -> None:
        self.ws_url = ws_url
        self.tokens = tokens
        self.rooms = rooms
        self.random = random.Random(seed)
        self.stop = asyncio.Event()
        self.acknowledged: dict[str, set[int]] = {room: set() for room in rooms}
        self.connects = self.refusals = self.messages = 0

    async def client(self, token: str, tag: str) -> None:
        rnd = self.random
        while not self.stop.is_set():
            room = rnd.choice(self.rooms)
            try:
                async with connect(
                    f"{self.ws_url}/ws/rooms/{room}/?access_token={token}", open_timeout=20, close_timeout=2
                ) as ws:
                    self.connects += 1
                    if rnd.random() < 0.1:
                        ws.transport.abort()  # gone before hello
                        continue
                    await self.session(ws, room, tag)
            except (OSError, WebSocketException, TimeoutError):
                self.refusals += 1  # a refused or cut handshake: try again
            await asyncio.sleep(rnd.uniform(0, 0.3))

    async def session(self, ws, room: str, tag: str) -> None:
        rnd = self.random
        deadline = time.monotonic() + rnd.uniform(0.2, 2)
        sent: set[str] = set()
        while time.monotonic() < deadline and not self.stop.is_set():
            action = rnd.random()
            if action < 0.3:
                text = f"{tag} {uuid.uuid4().hex[:8]}"
                sent.add(text)
                await ws.send(json.dumps({"type": "message", "text": text}))
                self.messages += 1
            elif action < 0.5:
                await ws.send(json.dumps({"type": "typing"}))
            elif action < 0.6:
                await ws.send(json.dumps({"type": "ping"}))
            try:
                async with asyncio.timeout(rnd.uniform(0.05, 0.4)):
                    while True:
                        event = json.loads(await ws.recv())
                        if event["type"] == "message" and event["text"] in sent:
                            self.acknowledged[room].add(event["id"])
            except TimeoutError:
                pass
        if rnd.random() < 0.4:
            ws.transport.abort()  # the network drops: no close frame


async def eventually(check, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"not within {timeout} s: {check.__doc__}"
        await asyncio.sleep(0.25)


async def test_hundreds_of_clients_join_chat_and_drop_then_everything_is_given_back(tmp_path):
    rooms = [f"soak-{n}-{uuid.uuid4().hex[:6]}" for n in range(ROOMS)]
    names = [f"soak{n}" for n in range(USERS)]
    with served(tmp_path, REALTIME_MAX_CONNECTIONS_PER_USER="20") as (server, log_path):
        create = "; ".join(f"U.objects.create_user({name!r}, password={name!r})" for name in names)
        server.manage("shell", "-c", f"from django.contrib.auth import get_user_model as g; U=g(); {create}")
        tokens = [server.create_token(name) for name in names]
        pid = server_pid(server.port)
        async with httpx.AsyncClient(base_url=server.url, headers=bearer(tokens[0]), timeout=30) as api:

            async def run(seconds: float, seed: int) -> Swarm:
                swarm = Swarm(server.ws_url, tokens, rooms, seed)
                clients = [
                    asyncio.create_task(swarm.client(token, f"c{n}"))
                    for token in tokens
                    for n in range(CLIENTS_PER_USER)
                ]
                await asyncio.sleep(seconds)
                swarm.stop.set()
                await asyncio.wait_for(asyncio.gather(*clients), 60)
                return swarm

            async def settled() -> bool:
                """/healthz counts no connection and nobody is present in any room"""
                if (await api.get("/healthz")).json()["connections"] != 0:
                    return False
                for room in rooms:
                    if (await api.get(f"/api/rooms/{room}/presence")).json()["users"]:
                        return False
                return True

            await run(WARM_UP_SECONDS, seed=1)
            await eventually(settled)
            baseline = rss(pid)

            swarm = await run(SOAK_SECONDS, seed=2)
            await eventually(settled)
            await asyncio.sleep(2)  # what the last releases scheduled
            after = rss(pid)

            assert swarm.connects > 1000, swarm.connects  # the soak did churn
            assert swarm.messages > 1000, swarm.messages
            for room in rooms:
                stored, after_id = set(), 0
                while True:
                    page = (await api.get(f"/api/rooms/{room}/messages?after={after_id}&limit=200")).json()
                    stored |= {m["id"] for m in page["messages"]}
                    if len(page["messages"]) < 200:
                        break
                    after_id = page["messages"][-1]["id"]
                assert swarm.acknowledged[room] <= stored, "a message the sender saw echoed is not stored"
        grown = f"RSS grew from {baseline / 2**20:.0f} MiB to {after / 2**20:.0f} MiB over the soak"
        print(grown, f"({swarm.connects} connections, {swarm.messages} messages)")
        assert after - baseline < RSS_SLACK_BYTES, grown
    log = log_path.read_text(errors="replace")
    assert "Exception in ASGI application" not in log and "Traceback" not in log, log[-3000:]
