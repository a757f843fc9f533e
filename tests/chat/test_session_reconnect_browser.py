"""An ended session in a browser: after 4401 the page asks /api/me, and goes on only as the same user.

A password change gives the changer's browser a new session key: the socket
opened with the old key closes with 4401, and the page reconnects with its
new cookie and catches up, without a login prompt. A login as someone else
in the same browser ends the page instead.
"""

from __future__ import annotations

import uuid

import pytest
from playwright.async_api import expect

from tests.chat.conftest import open_room, send_message
from tests.sse_client import login

pytestmark = [pytest.mark.slow, pytest.mark.browser]


# A page's WebSockets report how they closed (window.closeCodes).
RECORD_CLOSES = """
window.closeCodes = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("close", (event) => window.closeCodes.push(event.code));
  }
};
"""


async def browser_post(page, path: str, form: dict) -> int:
    """POST a form from the page's browser context (its cookies, its CSRF token); return the status."""
    cookies = {c["name"]: c["value"] for c in await page.context.cookies()}
    response = await page.context.request.post(
        path, form=form, headers={"X-CSRFToken": cookies["csrftoken"]}, max_redirects=0
    )
    return response.status


async def test_the_changers_page_reconnects_by_itself_after_a_password_change(live_server, logged_in_page):
    name, room = f"pw{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:8]}"
    live_server.create_user(name)
    page = await logged_in_page(name)
    await page.add_init_script(RECORD_CLOSES)
    await open_room(page, room)
    status = await browser_post(
        page,
        "/accounts/password_change/",
        {"old_password": name, "new_password1": "N3w-secret-99!", "new_password2": "N3w-secret-99!"},
    )
    assert status == 302
    # The socket of the old session key closed with 4401; the page asked /api/me and went on.
    await page.wait_for_function("window.closeCodes.includes(4401)", timeout=10_000)
    async with login(live_server.url, "bob") as bob:  # posted while the page reconnects
        csrf = {"X-CSRFToken": bob.cookies["csrftoken"]}
        posted = await bob.post(f"/api/rooms/{room}/messages", json={"text": "while away"}, headers=csrf)
        assert posted.status_code == 201
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    await expect(page.locator("#messages .message-text").filter(has_text="while away")).to_be_visible()
    await expect(page.locator("#session-ended")).to_be_hidden()
    await send_message(page, "still me")  # as the same user, with the new cookie


async def test_a_page_whose_browser_logged_in_as_someone_else_ends(live_server, logged_in_page):
    name, room = f"pw{uuid.uuid4().hex[:8]}", f"pw-{uuid.uuid4().hex[:8]}"
    live_server.create_user(name)
    page = await logged_in_page(name)
    await page.add_init_script(RECORD_CLOSES)
    await open_room(page, room)
    status = await browser_post(page, "/accounts/login/", {"username": "bob", "password": "bob"})
    assert status == 302
    # The first session was flushed: 4401; /api/me now answers for bob, so the page ends.
    await expect(page.locator("#session-ended")).to_be_visible()
    await expect(page.locator("#status")).to_have_attribute("data-state", "ended")
    assert 4401 in await page.evaluate("window.closeCodes")
