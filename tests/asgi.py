"""Helpers that drive the real project.asgi.application in-process."""

from __future__ import annotations

from contextlib import asynccontextmanager

import httpx
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

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
