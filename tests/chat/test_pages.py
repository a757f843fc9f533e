"""The chat's pages: its link in the header, its own stylesheet."""

from __future__ import annotations

import pytest

from tests.asgi import http, make_user, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_lobby_and_a_room_are_the_chat_s_pages_in_the_header_with_its_stylesheet():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        lobby = (await client.get("/")).text
        room = (await client.get("/rooms/general/")).text
    assert '<a href="/" aria-current="page">Chat</a>' in lobby
    assert '<a href="/">Chat</a>' in room
    for page in (lobby, room):
        assert "/static/chat/chat.css" in page and "/static/realtime/app.css" in page
