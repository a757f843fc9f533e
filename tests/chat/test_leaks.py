"""No connection leaks on `make serve`'s uvicorn, where the leaks showed: clients that vanish early.

Each test cuts more connections than the per-user limit (20), then proves the
user can still connect and that the server holds nothing for them: its
/healthz connection count back at 0, nobody online in the room.
"""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

from tests.live_client import cookie_header, joined, login, ws_connect
from tests.serve import served

pytestmark = pytest.mark.slow

CUTS = 25  # more than REALTIME_MAX_CONNECTIONS_PER_USER


def raw_request(server, path: str, headers: dict[str, str], upgrade: bool) -> bytes:
    """Return the bytes of a GET (a WebSocket upgrade if ``upgrade``) as a browser would send it."""
    lines = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", f"Origin: {server.url}"]
    if upgrade:
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            "Sec-WebSocket-Version: 13",
        ]
    else:
        lines.append("Accept: text/event-stream")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def cut(server, request: bytes, *, after: bytes | None) -> None:
    """Send ``request``, read until ``after`` appears (or nothing), then reset the TCP connection."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(request)
        received = b""
        while after is not None and after not in received:
            chunk = sock.recv(4096)
            if not chunk:
                break
            received += chunk
        # An RST, as a closed tab or a dropped network gives: no close frame, no FIN handshake.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


async def nothing_held(server, client: httpx.AsyncClient, room: str) -> tuple[int, list[str]]:
    """Wait until the server holds no connection (up to 5 s); return (connections, online in room)."""
    deadline = time.monotonic() + 5
    async with httpx.AsyncClient(base_url=server.url) as anonymous:
        while True:
            connections = (await anonymous.get("/healthz")).json()["connections"]
            users = (await client.get(f"/api/rooms/{room}/presence")).json()["users"]
            if (connections, users) == (0, []) or time.monotonic() > deadline:
                return connections, users
            await asyncio.sleep(0.1)


async def still_connects(server, client: httpx.AsyncClient, room: str) -> None:
    async with ws_connect(server, client, f"/ws/rooms/{room}/") as ws:
        assert (await joined(ws))["user"]["username"] == "alice"


async def test_sockets_cut_right_after_the_101_give_everything_back(tmp_path):
    with served(tmp_path) as (server, _log):
        async with login(server, "alice") as alice:
            request = raw_request(server, "/ws/rooms/cut/", cookie_header(alice), upgrade=True)
            for _ in range(CUTS):
                await asyncio.to_thread(cut, server, request, after=b"\r\n\r\n")
            assert await nothing_held(server, alice, "cut") == (0, [])
            await still_connects(server, alice, "cut")
            assert await nothing_held(server, alice, "cut") == (0, [])


@pytest.mark.parametrize("after", [None, b"\r\n\r\n"], ids=["before-the-response", "after-the-headers"])
async def test_sse_requests_cut_early_give_everything_back(tmp_path, after):
    with served(tmp_path) as (server, _log):
        async with login(server, "alice") as alice:
            request = raw_request(server, "/sse/rooms/cut/", cookie_header(alice), upgrade=False)
            for _ in range(CUTS):
                await asyncio.to_thread(cut, server, request, after=after)
            assert await nothing_held(server, alice, "cut") == (0, [])
            await still_connects(server, alice, "cut")
