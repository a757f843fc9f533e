"""The core's browser client on the core alone: the echo topic's page in a real browser.

A page on nothing but the core (tests/realtime/echo_site.py) fits a laptop and a phone; a quiet
connection stays live on the heartbeat; a WebSocket or an SSE stream stalled without a close shows as
reconnecting within 5 s, and once the network is back the page catches up on what was said meanwhile.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict

import pytest
from playwright.async_api import Page, expect

from tests.browser import Stall, StallingProxy, check_layout
from tests.conftest import LiveServer, make_live_server
from tests.live_client import joined, login, send_json, ws_connect

pytestmark = [pytest.mark.slow, pytest.mark.browser]


class EchoSite(LiveServer):
    """A live server of the echo site: the project's settings and URLs, plus the echo topic's page."""

    def arguments(self) -> list[str]:
        return [*self.command(), "tests.realtime.echo_site:application"]


@pytest.fixture(scope="module")
def live_server(tmp_path_factory):
    """This module's own Daphne, serving the echo site (logged_in_page logs in there)."""
    prepared = make_live_server(
        tmp_path_factory.mktemp("echo-site"), DJANGO_SETTINGS_MODULE="tests.realtime.echo_site"
    )
    server = EchoSite(**{k: v for k, v in asdict(prepared).items() if k != "process"})
    server.start()
    yield server
    server.stop()


async def said_on(page) -> list[str]:
    """Return the texts the page lists, in order."""
    return await page.locator("#said li").all_text_contents()


async def test_the_page_of_a_topic_fits_a_laptop_and_a_phone(logged_in_page, tmp_path):
    page = await logged_in_page("alice")
    await page.goto(f"/echo/{uuid.uuid4().hex[:8]}/")
    await check_layout(page, "echo", tmp_path)


async def stalls_then_catches_up(
    page: Page, ws, stall: Callable[[], None], restore: Callable[[], None], shown: str
):
    """Stall the page's stream while ``ws`` says two things: reconnecting within 5 s, then both in order."""
    status = page.locator("#status")
    stall()
    cut_at = time.monotonic()
    await expect(status).to_have_attribute("data-state", "reconnecting", timeout=5_000)
    assert time.monotonic() - cut_at < 5, "the stall showed too late"
    for text in ("during 1", "during 2"):
        await send_json(ws, {"type": "say", "text": text})

    restore()
    await expect(status).to_have_attribute("data-state", "live", timeout=20_000)
    await expect(status).to_contain_text(shown)
    # Caught up after the newest id the page held: each missed event once, in order.
    await expect(page.locator("#said li")).to_have_text(["before", "during 1", "during 2"])


async def test_a_stalled_websocket_shows_reconnecting_within_5_s_and_catches_up(logged_in_page, live_server):
    page = await logged_in_page("alice")
    stall = Stall()
    await page.route_web_socket(lambda url: "/ws/echo/" in url, stall.handle)
    name = uuid.uuid4().hex[:8]
    await page.goto(f"/echo/{name}/?transport=websocket")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-state", "live")

    async with login(live_server, "bob") as bob, ws_connect(live_server, bob, f"/ws/echo/{name}/") as ws:
        await joined(ws)
        await send_json(ws, {"type": "say", "text": "before"})
        await expect(page.locator("#said li")).to_have_text(["before"])

        # A quiet topic: only the heartbeat's pings and pongs cross the socket, and keep it live.
        await page.wait_for_timeout(5_000)
        await expect(status).to_have_attribute("data-state", "live")
        assert stall.connected == 1, "a quiet socket was replaced"

        def cut() -> None:
            stall.cut = True

        await stalls_then_catches_up(page, ws, cut, stall.restore, "WebSocket")
        assert stall.connected >= 2


async def test_a_stalled_sse_stream_shows_reconnecting_within_5_s_and_catches_up(logged_in_page, live_server):
    async with StallingProxy(live_server.port) as proxy:
        page = await logged_in_page("alice", base_url=proxy.url)
        streams: list[str] = []
        page.on("request", lambda request: "/sse/echo/" in request.url and streams.append(request.url))
        name = uuid.uuid4().hex[:8]
        await page.goto(f"/echo/{name}/?transport=sse")
        status = page.locator("#status")
        await expect(status).to_have_attribute("data-state", "live")
        await expect(status).to_contain_text("SSE")

        async with login(live_server, "bob") as bob, ws_connect(live_server, bob, f"/ws/echo/{name}/") as ws:
            await joined(ws)
            await send_json(ws, {"type": "say", "text": "before"})
            await expect(page.locator("#said li")).to_have_text(["before"])

            # A quiet stream: the keep-alives are invisible to the page, the answered probes keep it live.
            await page.wait_for_timeout(7_000)
            await expect(status).to_have_attribute("data-state", "live")
            assert len(streams) == 1, f"a quiet stream was replaced: {streams}"

            await stalls_then_catches_up(page, ws, proxy.stall, proxy.restore, "SSE")
            assert len(streams) >= 2
