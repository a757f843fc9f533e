"""A room's WebSocket at the handshake: without identity, or at a path that names no room, refused."""

from __future__ import annotations

import pytest

from tests.asgi import make_user, session_cookie, ws

pytestmark = pytest.mark.django_db(transaction=True)


async def refused(comm) -> bool:
    """Return whether the handshake was closed before accept (HTTP 403 on a real server)."""
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    return not connected


async def test_room_refuses_handshake_without_identity():
    assert await refused(ws("/ws/rooms/lobby/"))
    alice = await make_user("alice")
    assert not await refused(ws("/ws/rooms/lobby/", cookie=await session_cookie(alice)))


async def test_a_room_path_with_a_bad_slug_is_refused():
    alice = await make_user("alice")
    assert await refused(ws("/ws/rooms/Not_A_Slug/", cookie=await session_cookie(alice)))
