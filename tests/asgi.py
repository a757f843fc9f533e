"""Helpers that drive the real project.asgi.application in-process."""

from __future__ import annotations

import asyncio
import contextlib
import json
from contextlib import asynccontextmanager
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.asgi import get_asgi_application
from django.test import Client

import realtime.asgi
from project.asgi import application

HOST = "testserver"
ORIGIN = f"http://{HOST}"


async def make_user(username: str, password: str | None = None, **fields):
    """Create and return a user (password defaults to the username)."""
    return await sync_to_async(get_user_model().objects.create_user)(
        username, password=password or username, **fields
    )


async def session_cookie(user) -> str:
    """Log ``user`` in and return the ``Cookie`` header value of their session."""
    client = Client()
    await sync_to_async(client.force_login)(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def echo_application():
    """Return the project's ASGI app with the echo topic's WebSocket route (tests/realtime/echo.py).

    The core's tests open sockets there: any topic's connection behaves as
    the echo topic's, and no app need be installed. Built per call, so the
    middleware is the settings' of the moment.
    """
    return realtime.asgi.application(get_asgi_application(), "tests.realtime.echo_routes")


def ws(path: str, *, cookie: str | None = None, origin: str | None = ORIGIN, headers=(), app=None):
    """Return a communicator for a WebSocket handshake to ``path``."""
    head = [(b"host", HOST.encode())]
    if cookie:
        head.append((b"cookie", cookie.encode()))
    if origin:
        head.append((b"origin", origin.encode()))
    head += [(k.encode(), v.encode()) for k, v in headers]
    return WebsocketCommunicator(app or application, path, headers=head)


@asynccontextmanager
async def joined(path: str, *, user, skip_to_presence: bool = True, **kwargs):
    """Connect ``user`` to ``path``; yield the communicator after hello (and presence)."""
    comm = ws(path, cookie=await session_cookie(user), **kwargs)
    connected, _ = await comm.connect()
    assert connected, f"handshake to {path} refused"
    try:
        hello = await comm.receive_json_from()
        assert hello["type"] == "hello"
        if skip_to_presence:
            while (await comm.receive_json_from())["type"] != "presence":
                pass
        yield comm
    finally:
        await comm.disconnect()


def http(*, cookie: str | None = None, app=None, **headers: str) -> httpx.AsyncClient:
    """Return an httpx client that calls the ASGI app in-process, with a cookie jar."""
    cookies = dict([cookie.split("=", 1)]) if cookie else None
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app or application),
        base_url=ORIGIN,
        headers=headers,
        cookies=cookies,
    )


async def csrf_token(client: httpx.AsyncClient) -> str:
    """Fetch a page with a form so the client holds a CSRF cookie; return the token."""
    await client.get("/accounts/login/")
    return client.cookies["csrftoken"]


WAIT = 5.0  # a generous wait for one event


def http_scope(path: str, *, method: str = "GET", headers=()) -> dict:
    """Return the ASGI scope of an HTTP request to ``path`` (with its query string) from a local client."""
    url = urlsplit(path)
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": url.path,
        "raw_path": url.path.encode(),
        "query_string": url.query.encode(),
        "root_path": "",
        "headers": [(b"host", HOST.encode()), *headers],
        "client": ("127.0.0.1", 50000),
        "server": (HOST, 80),
    }


@dataclass
class SSEEvent:
    event: str  # ":" for a comment
    data: dict | None = None
    id: str | None = None


class InProcessStream:
    """A GET to the ASGI app whose streamed body is read as it comes (httpx's ASGI transport buffers)."""

    def __init__(self, path: str, headers: dict[str, str], app=None) -> None:
        self.app = app or application
        self.scope = http_scope(path, headers=[(k.lower().encode(), v.encode()) for k, v in headers.items()])
        self.to_app: asyncio.Queue = asyncio.Queue()
        self.from_app: asyncio.Queue = asyncio.Queue()
        self.buffer = ""
        self.ended = False
        self.task: asyncio.Task | None = None
        self.status = 0
        self.headers: dict[str, str] = {}

    async def __aenter__(self) -> InProcessStream:
        await self.to_app.put({"type": "http.request", "body": b"", "more_body": False})
        self.task = asyncio.create_task(self.app(self.scope, self.to_app.get, self.from_app.put))
        start = await asyncio.wait_for(self.from_app.get(), WAIT)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
        return self

    async def __aexit__(self, *exc) -> None:
        await self.to_app.put({"type": "http.disconnect"})
        try:
            await asyncio.wait_for(self.task, WAIT)
        except (TimeoutError, asyncio.CancelledError):
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def body(self) -> bytes:
        """Return the whole body of a response that is not a stream (an error)."""
        chunks = []
        while not self.ended:
            message = await asyncio.wait_for(self.from_app.get(), WAIT)
            chunks.append(message.get("body", b""))
            self.ended = not message.get("more_body", False)
        return b"".join(chunks)

    async def next(self, timeout: float = WAIT) -> SSEEvent:
        """Return the next SSE event or comment."""
        async with asyncio.timeout(timeout):
            while "\n\n" not in self.buffer:
                if self.ended:
                    raise EOFError("stream ended")
                message = await self.from_app.get()
                self.buffer += message.get("body", b"").decode()
                self.ended = not message.get("more_body", False)
        block, self.buffer = self.buffer.split("\n\n", 1)
        if block.startswith(":"):
            return SSEEvent(event=":")
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        data = json.loads(fields["data"])
        return SSEEvent(event=fields.get("event", "message"), data=data, id=fields.get("id"))

    async def next_event(self, timeout: float = WAIT) -> SSEEvent:
        """Return the next SSE event, skipping keep-alive comments."""
        while (event := await self.next(timeout)).event == ":":
            pass
        return event


def sse_stream(path: str, *, cookie: str | None = None, app=None, **headers: str) -> InProcessStream:
    """Return a GET of the SSE stream at ``path``, read event by event (``async with``)."""
    if cookie:
        headers["Cookie"] = cookie
    return InProcessStream(path, headers, app)


async def answers_until_pong(comm, pongs: int = 1) -> list[dict]:
    """Send a ping; return what the socket received before its pong (the frame's answers).

    ``pongs``: how many pongs end the read (2 when the frame was a ping itself).
    """
    await comm.send_json_to({"type": "ping"})
    received = []
    while True:
        message = await comm.receive_output(5)
        assert message["type"] == "websocket.send", f"the socket closed: {message}"
        event = json.loads(message["text"])
        received.append(event)
        if event["type"] == "pong":
            pongs -= 1
            if not pongs:
                return [e for e in received[:-1] if e["type"] != "presence_diff"]
