"""A client that follows a room and resumes from its last id after any drop."""

from __future__ import annotations

import asyncio
import json
import random

import httpx
import websockets

from tests.sse_client import SSEReader


class ResumingClient:
    """Follow one room over WebSocket or SSE; every message seen is kept, in arrival order.

    It does no de-duplication of its own: the server's replay must deliver
    each message exactly once for the tests' assertions to hold.
    """

    def __init__(self, base_url: str, room: str, cookies: httpx.Cookies, transport: str = "ws") -> None:
        self.base_url, self.room, self.cookies, self.transport = base_url, room, cookies, transport
        self.seen: list[int] = []
        self.close_codes: list[int] = []
        self.connected = asyncio.Event()

    @property
    def last_id(self) -> int:
        return self.seen[-1] if self.seen else 0

    async def run(self, stop: asyncio.Event, churn: float = 0.0) -> None:
        """Stay connected until ``stop``; with ``churn``, drop the connection at random that often."""
        backoff = 0.05
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.follow_once(stop, churn), timeout=60)
                backoff = 0.05
            except (OSError, websockets.WebSocketException, httpx.HTTPError, EOFError, TimeoutError):
                self.connected.clear()
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    async def follow_once(self, stop: asyncio.Event, churn: float) -> None:
        """One connection: resume after ``last_id``, read until dropped or stopped."""
        deadline = asyncio.get_running_loop().time() + random.uniform(0.05, churn) if churn else None
        events = self.websocket_events() if self.transport == "ws" else self.sse_events()
        async for event in events:
            if event.get("type") == "message":
                self.seen.append(event["id"])
            if stop.is_set() or (deadline and asyncio.get_running_loop().time() > deadline):
                return

    async def websocket_events(self):
        url = self.base_url.replace("http", "ws", 1) + f"/ws/rooms/{self.room}/?after={self.last_id}"
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()), "Origin": self.base_url}
        async with websockets.connect(url, additional_headers=headers) as ws:
            try:
                while True:
                    try:
                        text = await asyncio.wait_for(ws.recv(), 0.2)
                    except TimeoutError:
                        yield {}
                        continue
                    event = json.loads(text)
                    if event["type"] == "presence":
                        self.connected.set()
                    yield event
            except websockets.ConnectionClosed as closed:
                if closed.rcvd is not None:
                    self.close_codes.append(closed.rcvd.code)
                raise

    async def sse_events(self):
        async with (
            httpx.AsyncClient(
                base_url=self.base_url, cookies=self.cookies, timeout=httpx.Timeout(10, read=None)
            ) as c,
            c.stream(
                "GET", f"/sse/rooms/{self.room}/", headers={"Last-Event-ID": str(self.last_id)}
            ) as response,
        ):
            reader = SSEReader(response)
            while True:
                try:
                    sse = await reader.next_event(timeout=0.2)
                except TimeoutError:
                    yield {}
                    continue
                if sse.event == "presence":
                    self.connected.set()
                yield sse.data
