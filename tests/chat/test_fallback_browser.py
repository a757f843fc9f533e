"""The room page falls back to SSE + HTTP when WebSockets cannot connect.

The wire contract (docs/contract.md), section 4.
"""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from tests.chat.conftest import open_room, send_message

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# A network that refuses WebSocket upgrades, as some proxies do: every
# handshake fails the way a browser reports it (error, then close 1006).
BLOCK_WEBSOCKETS = """
window.WebSocket = class BlockedWebSocket extends EventTarget {
  static CONNECTING = 0; static OPEN = 1; static CLOSING = 2; static CLOSED = 3;
  constructor(url) {
    super();
    this.url = url;
    this.readyState = 0;
    window.__blockedWebSockets = (window.__blockedWebSockets || 0) + 1;
    setTimeout(() => {
      this.readyState = 3;
      this.dispatchEvent(new Event("error"));
      this.dispatchEvent(new CloseEvent("close", { code: 1006, wasClean: false }));
    }, 20);
  }
  send() { throw new DOMException("not open", "InvalidStateError"); }
  close() {}
};
"""


async def test_page_falls_back_to_sse_when_websockets_fail_and_still_chats(logged_in_page, room_slug):
    alice = await logged_in_page("alice")
    await alice.context.add_init_script(BLOCK_WEBSOCKETS)
    bob = await logged_in_page("bob")
    await open_room(bob, room_slug)

    await alice.goto(f"/rooms/{room_slug}/")
    status = alice.locator("#status")
    await expect(status).to_have_attribute("data-state", "live", timeout=20_000)
    await expect(status).to_contain_text("SSE")
    assert await alice.evaluate("window.__blockedWebSockets") >= 2, "WebSocket was tried first"

    await expect(alice.locator("#presence")).to_contain_text("bob")
    await expect(bob.locator("#presence")).to_contain_text("alice")
    await send_message(alice, "sent over HTTP, seen over SSE")
    await expect(bob.locator("#messages")).to_contain_text("sent over HTTP, seen over SSE")
    await send_message(bob, "sent over WebSocket")
    await expect(alice.locator("#messages")).to_contain_text("sent over WebSocket")


async def test_transport_sse_in_the_query_forces_sse(logged_in_page, room_slug):
    alice = await logged_in_page("alice")
    bob = await logged_in_page("bob")
    await alice.goto(f"/rooms/{room_slug}/?transport=sse")
    await expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    await expect(alice.locator("#status")).to_contain_text("SSE")
    await open_room(bob, room_slug)
    await send_message(bob, "to the SSE page")
    await expect(alice.locator("#messages")).to_contain_text("to the SSE page")
    await send_message(alice, "from the SSE page")
    await expect(bob.locator("#messages")).to_contain_text("from the SSE page")
