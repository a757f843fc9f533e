"""The pages in a real browser: chat, presence, resume after a cut, hostile text, phones, logout."""

from __future__ import annotations

import asyncio
import json
import re

import httpx
import pytest
from playwright.async_api import Page, WebSocketRoute, expect

from tests.browser import check_layout, watch_csp
from tests.chat.conftest import message_rows, open_room, send_message

pytestmark = [pytest.mark.slow, pytest.mark.browser]


def room_sockets(slug: str) -> re.Pattern:
    """Match the sockets of one room only: not the lobby's, which a page may still be opening."""
    return re.compile(rf"/ws/rooms/{re.escape(slug)}/")


class SocketCutter:
    """Routes a page's room WebSockets through Playwright so a test can cut them.

    ``page.context.set_offline`` does not close open WebSockets in Chromium
    (microsoft/playwright#4910), so the test holds each socket's route and
    closes both of its sides; while ``blocked``, new sockets are refused.
    """

    def __init__(self) -> None:
        self.blocked = False
        self.urls: list[str] = []  # every socket the page opened, in order
        self.frames: list[list[dict]] = []  # per socket: events the server sent
        self.refused = 0
        self.live: list[tuple[WebSocketRoute, WebSocketRoute]] = []

    async def handle(self, ws: WebSocketRoute) -> None:
        """Called for each new socket of the page."""
        self.urls.append(ws.url)
        if self.blocked:
            self.refused += 1
            await ws.close(code=1006, reason="cut by the test")
            return
        server = ws.connect_to_server()
        frames: list[dict] = []
        self.frames.append(frames)

        def forward(message: str | bytes) -> None:
            frames.append(json.loads(message))
            ws.send(message)

        server.on_message(forward)
        self.live.append((ws, server))

    async def cut(self) -> None:
        """Close every open socket on both sides and refuse new ones."""
        self.blocked = True
        for ws, server in self.live:
            # The page sees 1006, as after a network drop. The server side is closed
            # by the page's own WebSocket.close(), which throws (and Playwright swallows
            # the error) for any code but 1000 and 3000-4999: 1000 it is.
            await ws.close(code=1006, reason="cut by the test")
            await server.close(code=1000, reason="cut by the test")
        self.live.clear()

    def restore(self) -> None:
        """Let the next reconnect through to the server again."""
        self.blocked = False


async def until(condition, what: str, timeout: float = 5) -> None:
    """Wait until ``condition()`` is true, polling; fail saying ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"Waited {timeout} s for {what}", pytrace=False)
        await asyncio.sleep(0.02)


def presence_of(page: Page):
    """Return the locator of the page's presence list items."""
    return page.locator("#presence li")


async def test_two_users_see_each_others_messages_and_presence(logged_in_page, room_slug):
    """Alice and Bob share a room: each sees the other online, typing and talking."""
    alice = await logged_in_page("alice")
    bob = await logged_in_page("bob")
    await open_room(alice, room_slug)
    await open_room(bob, room_slug)

    for page in (alice, bob):
        await expect(presence_of(page)).to_have_text(["alice", "bob"])

    await bob.locator("#composer [name=text]").press_sequentially("hel")
    await expect(alice.locator("#typing")).to_have_text("bob is typing…")
    await expect(bob.locator("#typing")).to_have_text("")  # never your own name

    await send_message(alice, "hello from alice")
    await send_message(bob, "hi alice, bob here")
    expected = ["hello from alice", "hi alice, bob here"]
    for page in (alice, bob):
        await expect(page.locator("#messages li[data-id] .message-text")).to_have_text(expected)
    await expect(alice.locator("#typing")).to_have_text("")  # bob's message ends his typing
    assert await message_rows(alice) == await message_rows(bob)

    await bob.close()
    await expect(presence_of(alice)).to_have_text(["alice"])


async def test_reconnect_shows_missed_messages_exactly_once(logged_in_page, live_server, room_slug):
    """After a cut, Bob's reconnect replays exactly what he missed, each message once, in order."""
    alice = await logged_in_page("alice")
    bob = await logged_in_page("bob")
    cutter = SocketCutter()
    await bob.route_web_socket(room_sockets(room_slug), cutter.handle)
    await open_room(alice, room_slug)
    # This test is about WebSocket resume: without the pin, refused
    # reconnects would (rightly) make the page fall back to SSE meanwhile.
    await bob.goto(f"/rooms/{room_slug}/?transport=websocket")
    await expect(bob.locator("#status")).to_have_attribute("data-state", "live")
    await send_message(alice, "before the cut")
    await expect(bob.locator("#messages li[data-id]")).to_have_count(1)
    [(seen_id, _)] = await message_rows(bob)

    await cutter.cut()
    # The cut is real on both ends: Bob knows he is cut off, the server saw him leave.
    await expect(bob.locator("#status")).to_have_attribute("data-state", re.compile("reconnecting|offline"))
    await expect(presence_of(alice)).to_have_text(["alice"])

    missed = [f"missed {n}" for n in range(1, 4)]
    for text in missed:
        await send_message(alice, text)
    token = await asyncio.to_thread(live_server.create_token, "alice")
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        response = await http.post(
            f"/api/rooms/{room_slug}/messages",
            json={"text": "missed via the API"},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 201, response.text
    missed.append("missed via the API")
    await expect(alice.locator("#messages li[data-id]")).to_have_count(5)
    assert cutter.refused >= 1, "Bob should have tried to reconnect while cut off"
    assert [text for _, text in await message_rows(bob)] == ["before the cut"]

    cutter.restore()
    # Full-jitter backoff may wait up to its 15 s cap before the next attempt.
    await expect(bob.locator("#status")).to_have_attribute("data-state", "live", timeout=20_000)
    await expect(bob.locator("#messages li[data-id]")).to_have_count(5)
    await expect(presence_of(alice)).to_have_text(["alice", "bob"])

    rows = await message_rows(bob)
    assert rows == await message_rows(alice)
    assert [text for _, text in rows] == ["before the cut", *missed]
    ids = [message_id for message_id, _ in rows]
    assert ids == sorted(set(ids)), "ids must be unique and ascending"

    # The server replayed exactly the missed messages, because Bob resumed after his last id.
    assert cutter.urls[-1].endswith(f"?after={seen_id}")
    replayed = [frame["id"] for frame in cutter.frames[-1] if frame["type"] == "message"]
    assert replayed == ids[1:]


async def test_lobby_shows_live_online_counts_and_opens_rooms_by_name(logged_in_page, live_server, room_slug):
    """The lobby's counts follow who is in a room; a typed name opens the room of its slug."""
    alice = await logged_in_page("alice")
    bob = await logged_in_page("bob")
    row = bob.locator(f"#rooms li[data-slug='{room_slug}']")
    await expect(row).to_have_count(0)

    await open_room(alice, room_slug)
    await expect(row.locator(".online")).to_have_text("1 online")  # the lobby polls every 3 s
    await alice.goto("/")
    await expect(row.locator(".online")).to_have_text("0 online")

    await bob.get_by_label("Room name").fill(f"  {room_slug.upper()} ")
    await bob.get_by_role("button", name="Open").click()
    await expect(bob).to_have_url(f"{live_server.url}/rooms/{room_slug}/")
    await expect(bob.locator("#status")).to_have_attribute("data-state", "live")


async def test_user_text_is_rendered_as_text(logged_in_page, room_slug):
    """Markup in a message is shown literally and never becomes elements or runs script."""
    alice = await logged_in_page("alice")
    dialogs: list[str] = []

    async def record_and_dismiss(dialog) -> None:
        # An undismissed alert() would block the page and hang the test.
        dialogs.append(dialog.message)
        await dialog.dismiss()

    alice.on("dialog", record_and_dismiss)
    await open_room(alice, room_slug)

    hostile = "<img src=x onerror=alert(1)><b>bold</b>"
    await send_message(alice, hostile)
    await expect(alice.locator("#messages .message-text")).to_have_text([hostile])
    await expect(alice.locator("#messages img, #messages b, #messages script")).to_have_count(0)

    # History is rendered by the same code: reload and look again.
    await alice.reload()
    await expect(alice.locator("#messages .message-text")).to_have_text([hostile])
    await expect(alice.locator("#messages img, #messages b")).to_have_count(0)
    assert dialogs == []


async def test_the_strict_content_security_policy_is_enforced_and_its_violations_seen(browser, live_server):
    """Every test here fails on a violation (logged_in_page); this shows the policy works at all."""
    context = await browser.new_context(base_url=live_server.url)
    violations: list[str] = []
    await watch_csp(context, violations, "anonymous")
    page = await context.new_page()
    response = await page.goto("/accounts/login/")
    assert "script-src 'self'; style-src 'self'" in response.headers["content-security-policy"]
    await expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert violations == []

    # An inline script, as an injection would add one: the browser refuses to run it.
    ran = await page.evaluate(
        """() => {
          const script = document.createElement("script");
          script.textContent = "window.inlineScriptRan = true";
          document.head.append(script);
          return window.inlineScriptRan === true;
        }"""
    )
    assert ran is False
    await until(lambda: violations, "the violation report")
    assert "script-src-elem blocked inline on" in violations[0]
    await context.close()


async def test_room_fits_a_phone_screen(logged_in_page, room_slug):
    """On a 375x667 phone the composer and messages are visible, with no sideways scroll."""
    bob = await logged_in_page(
        "bob", viewport={"width": 375, "height": 667}, is_mobile=True, has_touch=True, device_scale_factor=2
    )
    await open_room(bob, room_slug)
    await send_message(bob, "a-very-long-word-" * 20)  # must wrap, not widen the page
    await send_message(bob, "short one")

    composer = bob.locator("#composer")
    for visible in (composer.locator("[name=text]"), composer.get_by_role("button", name="Send")):
        await expect(visible).to_be_in_viewport()
    await expect(bob.locator("#messages li[data-id]").last).to_be_in_viewport()
    widths = await bob.evaluate(
        "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]"
    )
    assert widths[0] <= widths[1], f"the page scrolls sideways: {widths}"
    box = await bob.locator("#composer").bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= 375


async def test_logout_in_another_tab_ends_the_room_page(logged_in_page, room_slug):
    """Logging out elsewhere ends the room's socket: the page says so and stops reconnecting."""
    alice = await logged_in_page("alice")
    sockets: list[str] = []

    def pass_through(ws: WebSocketRoute) -> None:
        sockets.append(ws.url)
        ws.connect_to_server()

    room = await alice.context.new_page()
    await room.route_web_socket(room_sockets(room_slug), pass_through)
    await open_room(room, room_slug)
    await alice.get_by_role("button", name="Log out").click()
    await expect(alice).to_have_url(re.compile(r"/accounts/login/"))

    await expect(room.locator("#status")).to_have_attribute("data-state", "ended")
    await expect(room.locator("#session-ended")).to_be_visible()
    await expect(room.locator("#session-ended a")).to_have_attribute("href", re.compile(r"^/accounts/login/"))
    await room.wait_for_timeout(1500)  # longer than the first backoff could be
    assert len(sockets) == 1, f"the page kept reconnecting: {sockets}"


@pytest.mark.parametrize(
    ("code", "why"), [(4401, "Your session ended"), (4403, "Your account was deactivated")]
)
async def test_fatal_close_codes_stop_reconnecting(logged_in_page, room_slug, code, why):
    """Close codes 4401 and 4403 are final: the page says why, links to login, never retries."""
    alice = await logged_in_page("alice")
    attempts: list[str] = []

    async def refuse(ws: WebSocketRoute) -> None:
        # A stand-in server: these codes are hard to provoke on cue for one page.
        attempts.append(ws.url)
        await ws.close(code=code, reason="test")

    await alice.route_web_socket(room_sockets(room_slug), refuse)
    if code == 4401:  # final once /api/me confirms it (a new session of the same user reconnects)
        unauthorized = {"error": "unauthorized"}
        await alice.route("**/api/me", lambda route: route.fulfill(status=401, json=unauthorized))
    await alice.goto(f"/rooms/{room_slug}/")
    await expect(alice.locator("#status")).to_have_attribute("data-state", "ended")
    await expect(alice.locator("#session-ended")).to_contain_text(why)
    await expect(alice.locator("#composer [name=text]")).to_be_disabled()
    await alice.wait_for_timeout(1500)  # longer than the first backoff could be
    assert len(attempts) == 1, f"the page kept reconnecting: {attempts}"


async def test_heartbeat_replaces_a_socket_that_stops_answering(logged_in_page, room_slug):
    """A quiet socket is pinged after 1.5 s of silence; one silent 2 s more is dropped and replaced."""
    alice = await logged_in_page("alice")
    sockets: list[list[dict]] = []  # per socket: the frames the page sent
    closes: list[int | None] = []  # close codes the page sent
    answering = True

    def stand_in_server(ws: WebSocketRoute) -> None:
        # A silent-but-open socket is what a dead NAT or a sleeping laptop leaves behind;
        # a stand-in server can play one on cue.
        frames: list[dict] = []
        sockets.append(frames)

        def receive(message: str | bytes) -> None:
            frame = json.loads(message)
            frames.append(frame)
            if frame["type"] == "ping" and answering:
                ws.send(json.dumps({"type": "pong"}))

        ws.on_message(receive)
        ws.on_close(lambda code, reason: closes.append(code))
        hello = {"type": "hello", "user": {"id": 1, "username": "alice"}, "room": room_slug, "last_id": 0}
        ws.send(json.dumps(hello))
        ws.send(json.dumps({"type": "presence", "users": ["alice"]}))

    def sent_on(index: int) -> list[str]:
        return [frame["type"] for frame in sockets[index]]

    await alice.clock.install()
    await alice.route_web_socket(room_sockets(room_slug), stand_in_server)
    await open_room(alice, room_slug)

    for pings in (1, 2, 3):  # the page checks every 0.5 s: 2 s of clock is one ping, each answered
        await alice.clock.run_for(2_000)
        await until(lambda n=pings: sent_on(0) == ["ping"] * n, f"ping {pings} on the first socket")
        await asyncio.sleep(0.2)  # the pong reaches the page (in real time) before the clock moves on
    await expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    assert len(sockets) == 1 and closes == []

    answering = False
    await alice.clock.run_for(2_000)
    await until(lambda: sent_on(0) == ["ping"] * 4, "a fourth ping")
    await alice.clock.run_for(2_000)  # 3.5 s of silence: the page gives up on the socket
    await until(lambda: closes == [4000], "the page to close the silent socket with 4000")
    # Replaced, by a new socket or by the SSE fallback (whichever the transport policy picks
    # first): the brief "reconnecting" in between is the ticker's stall test's to check.
    answering = True  # the network is back
    for _ in range(30):  # the longest backoff there could be (15 s), in steps a pong can keep up with
        if len(sockets) == 2 or await alice.locator("#status").get_attribute("data-state") == "live":
            break
        await alice.clock.run_for(500)
        await asyncio.sleep(0.05)
    await expect(alice.locator("#status")).to_have_attribute("data-state", "live")


async def test_lobby_and_room_fit_a_laptop_and_a_phone(logged_in_page, room_slug, tmp_path):
    """At 1280 and 390 px: no sideways scroll, the username in full, the live status shown; no 404."""
    alice = await logged_in_page("alice")
    missing: list[str] = []
    alice.on("response", lambda response: response.status == 404 and missing.append(response.url))
    await alice.goto("/")
    await check_layout(alice, "lobby", tmp_path)
    await open_room(alice, room_slug)
    await check_layout(alice, "room", tmp_path)
    assert await alice.locator("link[rel=icon]").get_attribute("href") == "/static/realtime/favicon.svg"
    assert not missing, f"the pages asked for what is not there: {missing}"
