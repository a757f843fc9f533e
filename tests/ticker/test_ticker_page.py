"""The ticker's page: its link in the header, and styles of its own."""

from __future__ import annotations

import pytest

from tests.asgi import http, make_user, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def test_the_dashboard_is_the_ticker_s_page_in_the_header_styled_by_its_own_css():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        page = (await client.get("/ticker/")).text
    assert '<a href="/ticker/" aria-current="page">Ticker</a>' in page
    assert "/static/ticker/ticker.css" in page and 'class="ticker-title"' in page
    assert "chat.css" not in page and "room-title" not in page
