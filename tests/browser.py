"""Browser fixtures for any app's browser tests: Debian's chromium through Playwright, logged-in pages.

tests/conftest.py registers the fixtures for the whole suite; nothing here imports an app.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, WebSocketRoute, async_playwright, expect

# Playwright's own browser download needs the internet; the system chromium does not.
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # the suite may run as root (containers, CI)
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# Every expect() waits this long at most: presence diffs are coalesced to one
# a second, and a reconnect waits out its backoff.
expect.set_options(timeout=10_000)

PageFactory = Callable[..., Awaitable[Page]]

# Runs in every page before its own scripts: reports each Content-Security-Policy violation to
# the test through a Playwright binding (which the policy does not govern).
REPORT_CSP_VIOLATIONS = """
document.addEventListener("securitypolicyviolation", (event) => window.reportCspViolation(
  `${event.violatedDirective} blocked ${event.blockedURI} on ${document.URL}`));
"""


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """A headless chromium; fails (never skips) when the executable is missing."""
    if not Path(CHROMIUM).is_file():
        pytest.fail(
            f"The browser tests need chromium at {CHROMIUM}, which is missing. "
            "Install Debian's chromium (apt-get install chromium) or set CHROMIUM=/path/to/chromium.",
            pytrace=False,
        )
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        await browser.close()


@pytest.fixture
async def logged_in_page(browser: Browser, live_server) -> AsyncIterator[PageFactory]:
    """Return ``await make(username, **context_options)``: a page in its own context, logged in.

    The context's ``base_url`` is the live server's unless given (a StallingProxy's, say).

    Each user gets their own browser context (own cookies), logged in through
    the real login form. A JavaScript error or a Content-Security-Policy violation on any
    page fails the test: the pages must work under the strict policy (settings.SECURE_CSP).
    """
    contexts = []
    page_errors: list[str] = []
    csp_violations: list[str] = []

    async def make(username: str, **context_options) -> Page:
        context = await browser.new_context(**{"base_url": live_server.url, **context_options})
        contexts.append(context)
        await watch_csp(context, csp_violations, username)
        page = await context.new_page()
        page.on("pageerror", lambda exc: page_errors.append(f"{username}: {exc}"))
        await log_in(page, username, password=username)
        return page

    yield make
    for context in contexts:
        await context.close()
    assert not page_errors, f"JavaScript errors on the page: {page_errors}"
    assert not csp_violations, f"Content-Security-Policy violations: {csp_violations}"


async def watch_csp(context: BrowserContext, violations: list[str], who: str) -> None:
    """Append to ``violations`` each Content-Security-Policy violation on the context's pages."""

    def report(source, text: str) -> None:
        violations.append(f"{who}: {text}")

    await context.expose_binding("reportCspViolation", report)
    await context.add_init_script(REPORT_CSP_VIOLATIONS)


async def log_in(page: Page, username: str, password: str) -> None:
    """Log in through the login form, as a person would, and land on the first page."""
    await page.goto("/accounts/login/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#whoami")).to_have_text(username)


# The widths every page's layout is checked at: a laptop and a phone (iPhone 12 to 15).
DESKTOP_AND_PHONE = [(1280, 800), (390, 844)]


async def check_layout(page: Page, name: str, directory: Path) -> list[Path]:
    """At a laptop's and a phone's width, check the page's header and width; return the screenshots.

    At each: no sideways scroll, the username in full, the live status shown (and clear of the
    account), every link of the header's navigation in view (none hidden, none scrolled out of
    the bar). Each screenshot is saved as ``<directory>/<name>-<width>.png`` for a person to look at.
    """
    shots = []
    for width, height in DESKTOP_AND_PHONE:
        await page.set_viewport_size({"width": width, "height": height})
        await expect(page.locator("[data-live-status]").first).to_have_attribute("data-state", "live")
        layout = await page.evaluate(MEASURE_LAYOUT)
        where = f"{name} at {width} px"
        assert layout["scrollWidth"] <= layout["innerWidth"], f"{where} scrolls sideways: {layout}"
        assert layout["whoami"]["visible"], f"{where} hides the username: {layout}"
        assert layout["whoami"]["scrollWidth"] <= layout["whoami"]["clientWidth"], (
            f"{where} truncates the username: {layout}"
        )
        assert layout["status"]["visible"], f"{where} hides the live status: {layout}"
        assert layout["status"]["scrollWidth"] <= layout["status"]["clientWidth"], (
            f"{where} cuts the live status short: {layout}"
        )
        assert not layout["overlap"], f"{where} draws the status over the account: {layout}"
        assert layout["nav"], f"{where} has no navigation links: {layout}"
        hidden = [link["text"] for link in layout["nav"] if not link["visible"]]
        assert not hidden, f"{where} hides the navigation links {hidden}: {layout}"
        shot = directory / f"{name}-{width}.png"
        await page.screenshot(path=str(shot), full_page=True)
        shots.append(shot)
    return shots


# What check_layout measures: overflow of the document, the username's, status's and navigation
# links' boxes, and whether the status's box runs into the account's (name and logout button).
MEASURE_LAYOUT = """() => {
  const box = (element) => {
    if (!element) return { visible: false };
    const rect = element.getBoundingClientRect();
    const inside = rect.width > 0 && rect.height > 0 && rect.left >= 0 && rect.right <= innerWidth;
    return {
      visible: inside && getComputedStyle(element).visibility !== "hidden",
      scrollWidth: element.scrollWidth, clientWidth: element.clientWidth,
      left: rect.left, right: rect.right, text: element.textContent,
    };
  };
  const status = document.querySelector("[data-live-status]");
  const account = document.querySelector(".account");
  const a = status && status.getBoundingClientRect();
  const b = account && account.getBoundingClientRect();
  // A link counts as shown only inside the nav's own box too (the nav scrolls sideways on overflow).
  const nav = document.querySelector("header nav");
  const navRect = nav && nav.getBoundingClientRect();
  const link = (element) => {
    const shown = box(element);
    const rect = element.getBoundingClientRect();
    const inNav = rect.left >= navRect.left - 0.5 && rect.right <= navRect.right + 0.5;
    return { ...shown, visible: shown.visible && inNav && getComputedStyle(nav).display !== "none" };
  };
  const overlap = Boolean(a && b && a.left < b.right && b.left < a.right
    && a.top < b.bottom && b.top < a.bottom);
  return {
    scrollWidth: document.scrollingElement.scrollWidth, innerWidth, overlap,
    whoami: box(document.getElementById("whoami")),
    status: box(status),
    nav: nav ? [...nav.querySelectorAll("a")].map(link) : [],
  };
}"""


class Stall:
    """Stand between the page and the server's WebSockets, and cut them without a close.

    Until ``cut``, every socket is forwarded both ways. After it, the open ones carry nothing
    more in either direction and no close reaches the page (a network gone without a FIN); new
    ones open but stay silent, as a socket to a vanished network would. ``restore`` forwards
    the sockets opened after it.
    """

    def __init__(self) -> None:
        self.cut = False
        self.connected = 0

    def handle(self, ws: WebSocketRoute) -> None:
        """Take each new socket of a page: ``await page.route_web_socket(pattern, stall.handle)``."""
        if self.cut:
            return  # opened by Playwright, answered by nobody
        self.connected += 1
        server = ws.connect_to_server()
        ws.on_message(lambda message: None if self.cut else server.send(message))
        server.on_message(lambda message: None if self.cut else ws.send(message))

    def restore(self) -> None:
        self.cut = False


class StallingProxy:
    """A TCP proxy between the browser and a server that can stop forwarding without a close.

    For what a WebSocket route cannot stand in for (an SSE stream, the HTTP requests beside it):
    give the page ``base_url=proxy.url``. Until ``stall``, every connection is forwarded both
    ways. After it, the open ones carry nothing more in either direction and no close reaches the
    page (a network gone without a FIN); new ones are accepted and stay silent. ``restore``
    forwards the connections opened after it, and resets the frozen ones, as a NAT that forgot
    them would on their next packet (so the browser does not reuse them forever).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.cut = False
        self.frozen: set[asyncio.StreamWriter] = set()  # browser-side connections the stall froze
        self.forwarding: dict[asyncio.StreamWriter, asyncio.StreamWriter] = {}  # browser side: server side
        self.server: asyncio.Server | None = None
        self.url = ""

    async def __aenter__(self) -> StallingProxy:
        self.server = await asyncio.start_server(self.accept, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc_info) -> None:
        self.server.close()
        for writer in [*self.frozen, *self.forwarding, *self.forwarding.values()]:
            writer.transport.abort()
        await self.server.wait_closed()

    def stall(self) -> None:
        """Freeze every open connection and leave new ones unanswered."""
        self.cut = True
        self.frozen.update(self.forwarding)

    def restore(self) -> None:
        """Forward new connections again; reset the frozen ones (both sides)."""
        self.cut = False
        for browser_side in self.frozen:
            browser_side.transport.abort()
            server_side = self.forwarding.get(browser_side)
            if server_side:
                server_side.transport.abort()
        self.frozen.clear()

    async def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Forward one browser connection to the server, or hold it silent during a stall."""
        if self.cut:
            self.frozen.add(writer)
            await self.swallow(reader)
            return
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.forwarding[writer] = server_writer
        try:
            await asyncio.gather(
                self.pipe(reader, server_writer, writer), self.pipe(server_reader, writer, writer)
            )
        finally:
            self.forwarding.pop(writer, None)
            server_writer.transport.abort()
            if writer not in self.frozen:
                writer.transport.abort()

    async def pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, browser_side) -> None:
        """Copy one direction until it ends; while the connection is frozen, drop what comes."""
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if browser_side in self.frozen:
                    continue
                writer.write(data)
                await writer.drain()
        if browser_side not in self.frozen:
            writer.close()  # the end of one direction ends the connection, as it would unproxied

    @staticmethod
    async def swallow(reader: asyncio.StreamReader) -> None:
        """Read and drop until the browser closes (or the proxy resets the connection)."""
        with contextlib.suppress(ConnectionError, OSError):
            while await reader.read(65536):
                pass
