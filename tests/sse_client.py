"""A small Server-Sent Events reader and login helper for tests against a live server."""

from __future__ import annotations

import asyncio
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx


@dataclass
class SSEEvent:
    """One parsed SSE event (or a comment, with event == ":")."""

    event: str
    data: dict | None = None
    id: str | None = None


class SSEReader:
    """Parse an ``httpx`` streaming response into events, keeping comments visible."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.aiter_lines()

    async def next(self, timeout: float = 5) -> SSEEvent:
        """Return the next event or comment."""
        return await asyncio.wait_for(self._next(), timeout)

    async def next_event(self, timeout: float = 5) -> SSEEvent:
        """Return the next event, skipping keep-alive comments."""
        while (event := await self.next(timeout)).event == ":":
            pass
        return event

    async def _next(self) -> SSEEvent:
        fields: dict[str, str] = {}
        async for line in self.lines:
            if line.startswith(":"):
                return SSEEvent(event=":", data=None)
            if line == "":
                if fields:
                    data = json.loads(fields["data"]) if "data" in fields else None
                    return SSEEvent(event=fields.get("event", "message"), data=data, id=fields.get("id"))
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
        raise EOFError("stream ended")


@asynccontextmanager
async def login(base_url: str, username: str, password: str | None = None):
    """Log in through the real login form; yield a client holding the session."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        await client.get("/accounts/login/")
        response = await client.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password or username,
                "csrfmiddlewaretoken": client.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302, f"login as {username} failed: {response.status_code}"
        assert "sessionid" in client.cookies
        yield client


@asynccontextmanager
async def sse(client: httpx.AsyncClient, path: str, **headers: str):
    """Open an SSE stream; yield its reader once the response headers arrived."""
    async with client.stream("GET", path, headers=headers, timeout=httpx.Timeout(10, read=None)) as response:
        yield SSEReader(response)
