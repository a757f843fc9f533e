"""The chat's test helpers: a fresh room per test, and what its pages and API show.

Every live or browser test gets its own room (``room``, ``room_slug``), so
the session-wide server's history and rate limits never leak from one test
into another.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.async_api import Page, expect


@pytest.fixture
def room() -> str:
    """Return a fresh room slug for this test only."""
    return f"t-{uuid.uuid4().hex[:16]}"


async def stored_texts(client: httpx.AsyncClient, room: str) -> list[str]:
    """Return the texts the HTTP API has stored for ``room``."""
    response = await client.get(f"/api/rooms/{room}/messages", params={"limit": 200})
    assert response.status_code == 200
    return [m["text"] for m in response.json()["messages"]]


@pytest.fixture
def room_slug() -> str:
    """A fresh room per test, so tests never see each other's messages."""
    return f"e2e-{uuid.uuid4().hex[:12]}"


async def open_room(page: Page, slug: str) -> None:
    """Open a room page and wait until its WebSocket is live."""
    await page.goto(f"/rooms/{slug}/")
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")


async def send_message(page: Page, text: str) -> None:
    """Type a message in the composer and press Enter; wait until the server echoes it."""
    box = page.locator("#composer [name=text]")
    await box.fill(text)
    await box.press("Enter")
    await expect(box).to_have_value("")
    echoed = page.locator("#messages li[data-id] .message-text").filter(has_text=text)
    await expect(echoed.last).to_be_visible()


async def message_rows(page: Page) -> list[tuple[int, str]]:
    """Return the (id, text) of every message in the page's list, top to bottom."""
    rows = await page.locator("#messages li[data-id]").evaluate_all(
        "items => items.map(li => [Number(li.dataset.id), li.querySelector('.message-text').textContent])"
    )
    return [(message_id, text) for message_id, text in rows]
