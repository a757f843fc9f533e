"""The ticker dashboard in a real browser: prices update in place, over WebSocket and over SSE."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.conftest import make_live_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]


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
