"""Browser fixtures: Debian's chromium through Playwright, logged-in pages per user."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

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


@pytest.fixture(autouse=True)
def _live_server_helper():
    """Shadow pytest-django's autouse helper, which mistakes our Daphne ``live_server`` for its own."""
    yield


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
def room_slug() -> str:
    """A fresh room per test, so tests never see each other's messages."""
    return f"e2e-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def logged_in_page(browser: Browser, live_server) -> AsyncIterator[PageFactory]:
    """Return ``await make(username, **context_options)``: a page in its own context, logged in.

    Each user gets their own browser context (own cookies), logged in through
    the real login form. A JavaScript error or a Content-Security-Policy violation on any
    page fails the test: the pages must work under the strict policy (settings.SECURE_CSP).
    """
    contexts = []
    page_errors: list[str] = []
    csp_violations: list[str] = []

    async def make(username: str, **context_options) -> Page:
        context = await browser.new_context(base_url=live_server.url, **context_options)
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
    """Log in through the login form, as a person would, and land on the lobby."""
    await page.goto("/accounts/login/")
    await page.get_by_label("Username").fill(username)
    await page.get_by_label("Password").fill(password)
    await page.get_by_role("button", name="Log in").click()
    await expect(page.locator("#whoami")).to_have_text(username)


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
