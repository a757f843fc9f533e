"""The ticker dashboard in a real browser: prices update in place, over WebSocket and over SSE.

Also the dashboard's looks (sparklines, a highlight on each move, the time of the last update,
the layout on a laptop and a phone) and what it shows while the connection stalls.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from playwright.async_api import Page, expect

from tests.browser import Stall, StallingProxy, check_layout
from tests.conftest import make_live_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TIME_OF_DAY = re.compile(r"\d{1,2}:\d{2}:\d{2}")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """A Daphne of this module's own whose feed ticks every 0.2 s (the shared one ticks every second)."""
    server = make_live_server(tmp_path_factory.mktemp("ticker-live"), TICKER_INTERVAL="0.2")
    server.start()
    yield server
    server.stop()


async def price_cells(page: Page) -> dict[str, str]:
    """Return the price shown for each symbol, by row."""
    rows = await page.locator("#ticker-rows tr").evaluate_all(
        "rows => rows.map(r => [r.dataset.symbol, r.querySelector('.price').textContent])"
    )
    return dict(rows)


async def assert_updates_in_place(page: Page) -> None:
    """Check that the seq and a price change while the page stays the same document."""
    await page.evaluate("window.__sameDocument = true")
    seq = page.locator("#ticker-seq")
    first_seq = await seq.text_content()
    first_prices = await price_cells(page)
    assert len(first_prices) >= 5 and all(p != "–" for p in first_prices.values()), first_prices

    await expect(seq).not_to_have_text(first_seq)
    # Ticks every 0.2 s: some price moves within a few of them.
    await page.wait_for_function(
        "before => [...document.querySelectorAll('#ticker-rows tr')]"
        ".some(r => r.querySelector('.price').textContent !== before[r.dataset.symbol])",
        arg=first_prices,
        timeout=10_000,
    )
    later = await price_cells(page)
    assert later != first_prices, "no price cell changed"
    assert set(later) == set(first_prices), "rows were replaced or added, not updated in place"
    assert int(await seq.text_content()) > int(first_seq)
    assert await page.evaluate("window.__sameDocument === true"), "the page reloaded"


async def test_dashboard_updates_prices_in_place_over_websocket(logged_in_page):
    page = await logged_in_page("alice")
    await page.goto("/ticker/")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "live")
    await expect(status).to_contain_text("WebSocket")
    await assert_updates_in_place(page)


async def test_dashboard_updates_prices_in_place_over_sse(logged_in_page):
    page = await logged_in_page("alice")
    await page.goto("/ticker/?transport=sse")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "live")
    await expect(status).to_contain_text("SSE")
    await assert_updates_in_place(page)


async def test_dashboard_draws_sparklines_flashes_moves_and_shows_the_time(logged_in_page, tmp_path):
    page = await logged_in_page("alice")
    await page.goto("/ticker/")
    await expect(page.locator("#status")).to_have_attribute("data-state", "live")
    # A sparkline per symbol, growing with each tick (0.2 s here).
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#ticker-rows tr')].every("
        "r => (r.querySelector('.spark polyline')?.getAttribute('points') || '').split(' ').length >= 5)",
        timeout=10_000,
    )
    # A moved price is highlighted for a moment (an animation on its cell).
    await page.wait_for_function(
        "() => [...document.querySelectorAll('#ticker-rows .price')].some(c => c.getAnimations().length > 0)",
        timeout=10_000,
    )
    updated = page.locator("#ticker-updated")
    await expect(updated).to_have_text(TIME_OF_DAY)
    assert await updated.get_attribute("datetime"), "the update time carries no machine-readable datetime"
    await expect(page.locator("#ticker-stale")).to_be_hidden()
    await check_layout(page, "ticker", tmp_path)


async def stalls_then_catches_up(
    page: Page, stall: Callable[[], None], restore: Callable[[], None], shown: str, shot
):
    """Stall the page's stream: it shows reconnecting within 5 s, then live again with the latest prices."""
    status, seq = page.locator("#status"), page.locator("#ticker-seq")
    stall()
    cut_at = time.monotonic()
    await expect(status).to_have_attribute("data-state", "reconnecting", timeout=5_000)
    assert time.monotonic() - cut_at < 5, "the stall showed too late"
    frozen = int(await seq.text_content())
    await expect(page.locator("#dashboard")).to_have_attribute("data-stale", "yes")
    await expect(page.locator("#ticker-stale")).to_be_visible()
    await page.screenshot(path=str(shot))

    restore()
    await expect(status).to_have_attribute("data-state", "live", timeout=20_000)
    await expect(status).to_contain_text(shown)
    # Caught up: the latest snapshot, well past the seq shown when the stall began.
    await page.wait_for_function(
        "frozen => Number(document.getElementById('ticker-seq').textContent) > frozen + 3", arg=frozen
    )
    await expect(page.locator("#dashboard")).to_have_attribute("data-stale", "no")
    await expect(page.locator("#ticker-stale")).to_be_hidden()


async def test_a_stalled_websocket_shows_reconnecting_within_5_s_then_catches_up(logged_in_page, tmp_path):
    page = await logged_in_page("alice")
    stall = Stall()
    await page.route_web_socket(lambda url: "/ws/ticker/" in url, stall.handle)
    await page.goto("/ticker/?transport=websocket")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "live")

    def cut() -> None:
        stall.cut = True

    await stalls_then_catches_up(page, cut, stall.restore, "WebSocket", tmp_path / "ticker-stalled-1280.png")
    assert stall.connected >= 2, "the page never opened a new socket"


@pytest.mark.parametrize(("transport", "shown"), [("websocket", "WebSocket"), ("sse", "SSE")])
async def test_going_offline_shows_at_once_and_online_reconnects(logged_in_page, transport, shown):
    page = await logged_in_page("alice")
    await page.goto(f"/ticker/?transport={transport}")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "live")

    # Chromium keeps an open WebSocket open when it goes offline: the "offline" event drops it
    # (and an SSE stream, which EventSource would otherwise retry by itself).
    await page.context.set_offline(True)
    await expect(status).to_have_attribute("data-state", "offline", timeout=2_000)
    await expect(page.locator("#ticker-stale")).to_be_visible()
    frozen = int(await page.locator("#ticker-seq").text_content())

    await page.context.set_offline(False)
    await expect(status).to_have_attribute("data-state", "live")
    await expect(status).to_contain_text(shown)
    await page.wait_for_function(
        "frozen => Number(document.getElementById('ticker-seq').textContent) > frozen", arg=frozen
    )


async def test_a_stalled_sse_stream_shows_reconnecting_within_5_s_then_catches_up(
    logged_in_page, live_server, tmp_path
):
    async with StallingProxy(live_server.port) as proxy:
        page = await logged_in_page("alice", base_url=proxy.url)
        await page.goto("/ticker/?transport=sse")
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "live")
        await expect(status).to_contain_text("SSE")
        seq = page.locator("#ticker-seq")
        await expect(seq).not_to_have_text("–")

        # The feed ticks every 0.2 s: the stall begins just after an event, the longest wait to notice it.
        await stalls_then_catches_up(
            page, proxy.stall, proxy.restore, "SSE", tmp_path / "ticker-sse-stalled-1280.png"
        )
