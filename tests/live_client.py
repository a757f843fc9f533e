"""Real clients (httpx, websockets) against a real server, for any app's live tests.

The fixtures (``alice``, ``bob``, ``anonymous``, ``alice_token``,
``alice_bearer``) are registered for the whole suite by tests/conftest.py.
Nothing here imports an app: an app's own helpers live in tests/<app>/.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from tests.sse_client import login as login_at

if TYPE_CHECKING:  # tests/conftest.py imports this module for its fixtures
    from tests.conftest import LiveServer


def login(live_server: LiveServer, username: str, password: str | None = None):
    """Log in through Django's login form; yield a client holding the session cookie.

    ``async with login(live_server, "alice") as alice: ...``
    """
    return login_at(live_server.url, username, password)


def csrf_headers(client: httpx.AsyncClient) -> dict[str, str]:
    """Return the header a session client sends with unsafe methods (Django's CSRF)."""
    return {"X-CSRFToken": client.cookies["csrftoken"]}


def bearer(token: str) -> dict[str, str]:
    """Return the header a script sends to authenticate with an API token."""
    return {"Authorization": f"Bearer {token}"}


def cookie_header(client: httpx.AsyncClient | None) -> dict[str, str]:
    """Return a Cookie header carrying ``client``'s cookies (none for ``None``)."""
    if client is None or not client.cookies:
        return {}
    return {"Cookie": "; ".join(f"{name}={value}" for name, value in client.cookies.items())}


def ws_connect(
    live_server: LiveServer,
    client: httpx.AsyncClient | None,
    path: str,
    *,
    origin: str | None = "same",
    headers: dict[str, str] | None = None,
) -> connect:
    """Open a WebSocket as a browser tab of ``client`` would: its cookies, the server's Origin.

    ``origin="same"`` sends the server's own origin; pass another origin, or
    ``None`` to send none (as scripts do). Use as ``async with ws_connect(...) as ws``.
    """
    return connect(
        live_server.ws_url + path,
        origin=live_server.url if origin == "same" else origin,
        additional_headers={**cookie_header(client), **(headers or {})},
        open_timeout=5,
        close_timeout=2,
    )


async def hello_or_refused(
    server: LiveServer, client: httpx.AsyncClient, path: str
) -> ClientConnection | None:
    """Try a socket to ``path`` on ``server``; return it once hello arrived, or None when refused (403)."""
    try:
        ws = await connect(
            f"{server.ws_url}{path}",
            additional_headers={**cookie_header(client), "Origin": server.url},
            open_timeout=20,
        )
    except InvalidStatus as exc:
        assert exc.response.status_code == 403
        return None
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
    return ws


async def recv_json(ws: ClientConnection, timeout: float = 5) -> dict[str, Any]:
    """Return the next frame of ``ws`` decoded, failing after ``timeout`` seconds."""
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_event(
    ws: ClientConnection, timeout: float = 5, skip: tuple[str, ...] = ("presence_diff",)
) -> dict[str, Any]:
    """Return the next event whose type is not in ``skip`` (by default presence changes)."""
    async with asyncio.timeout(timeout):
        while True:
            event = await recv_json(ws, timeout)
            if event["type"] not in skip:
                return event


async def joined(ws: ClientConnection) -> dict[str, Any]:
    """Read the events sent on accept (hello, any replay, presence); return hello."""
    hello = await recv_json(ws)
    assert hello["type"] == "hello", hello
    while (await recv_json(ws))["type"] != "presence":
        pass
    return hello


async def send_json(ws: ClientConnection, frame: Any) -> None:
    """Send ``frame`` as one JSON text frame."""
    await ws.send(json.dumps(frame))


async def assert_refused(live_server: LiveServer, path: str, **kwargs: Any) -> None:
    """Assert the handshake is refused before accept with HTTP 403 (see ws_connect for kwargs)."""
    client = kwargs.pop("client", None)
    with pytest.raises(InvalidStatus) as refused:
        async with ws_connect(live_server, client, path, **kwargs):
            pass
    assert refused.value.response.status_code == 403


@pytest.fixture(scope="session")
def logins() -> dict[str, httpx.Cookies]:
    """Return the cookies of each user's form login, so each user logs in once per session.

    A login hashes the password (about 0.3 s); the suite would spend most of
    its time there. Tests that log out must log in afresh with ``login``.
    """
    return {}


@contextlib.asynccontextmanager
async def logged_in(
    live_server: LiveServer, logins: dict[str, httpx.Cookies], username: str
) -> AsyncIterator[httpx.AsyncClient]:
    """Yield a client with ``username``'s session, logging in through the form the first time."""
    if username not in logins:
        async with login(live_server, username) as client:
            logins[username] = httpx.Cookies(client.cookies)
    async with httpx.AsyncClient(base_url=live_server.url, cookies=logins[username], timeout=10) as client:
        yield client


@pytest.fixture
async def alice(live_server: LiveServer, logins) -> AsyncIterator[httpx.AsyncClient]:
    """Return an httpx client with alice's session cookie."""
    async with logged_in(live_server, logins, "alice") as client:
        yield client


@pytest.fixture
async def bob(live_server: LiveServer, logins) -> AsyncIterator[httpx.AsyncClient]:
    """Return an httpx client with bob's session cookie."""
    async with logged_in(live_server, logins, "bob") as client:
        yield client


@pytest.fixture
async def anonymous(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """Return an httpx client with no identity."""
    async with httpx.AsyncClient(base_url=live_server.url, timeout=10) as client:
        yield client


@pytest.fixture(scope="session")
def alice_token(live_server: LiveServer) -> str:
    """Return an API token for alice, issued once with manage.py create_token."""
    return live_server.create_token("alice")


@pytest.fixture
async def alice_bearer(live_server: LiveServer, alice_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """Return an httpx client that authenticates as alice with a bearer token only."""
    async with httpx.AsyncClient(base_url=live_server.url, headers=bearer(alice_token), timeout=10) as client:
        yield client
