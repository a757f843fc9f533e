"""Attachments in a real browser: progress over the WebSocket, pause, resume, reload."""

from __future__ import annotations

import asyncio
import json
import os
import struct
import zlib
from pathlib import Path

import pytest
from playwright.async_api import Page, Request, Route, expect

from tests.chat.conftest import open_room
from tests.conftest import LiveServer, running_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

MiB = 1024 * 1024
CHUNK = 2 * MiB  # upload.js CHUNK_SIZE


@pytest.fixture(scope="module")
def live_server(tmp_path_factory) -> LiveServer:
    """This module's own Daphne (shadowing the session one), its uploads in a temporary directory."""
    root = tmp_path_factory.mktemp("uploads-e2e")
    with running_server(root, DJANGO_MEDIA_ROOT=str(root / "media")) as server:
        yield server


def noise_png(path: Path, width: int = 1024, height: int = 1024) -> Path:
    """Write a valid PNG of random pixels, stored uncompressed (about 3 MiB: two chunks)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 0))
        + chunk(b"IEND", b"")
    )
    return path


def record_upload_progress(page: Page) -> list[dict]:
    """Collect the upload_progress events the page's WebSockets receive."""
    seen: list[dict] = []

    def on_socket(ws) -> None:
        def on_frame(payload: str | bytes) -> None:
            event = json.loads(payload)
            if event.get("type") == "upload_progress":
                seen.append(event)

        ws.on("framereceived", on_frame)

    page.on("websocket", on_socket)
    return seen


async def test_attached_image_shows_progress_then_appears_for_the_other_user(
    logged_in_page, room_slug, tmp_path
):
    """Alice attaches a picture: her bar follows the server's progress events; Bob sees the thumbnail."""
    picture = noise_png(tmp_path / "noise.png")
    size = picture.stat().st_size
    alice = await logged_in_page("alice")
    bob = await logged_in_page("bob")
    progress = record_upload_progress(alice)
    await open_room(alice, room_slug)
    await open_room(bob, room_slug)

    await alice.locator("#attach-input").set_input_files(picture)

    row = alice.locator("#uploads li.upload")
    await expect(row).to_have_attribute("data-state", "done")
    await expect(row.locator("progress")).to_have_js_property("value", size)
    attachment = bob.locator("#messages li[data-id] a.attachment")
    await expect(attachment).to_have_text("noise.png")
    thumbnail = bob.locator("#messages img.attachment-thumb")
    await expect(thumbnail).to_have_js_property("naturalWidth", 1024)  # served as an image, inline
    await expect(alice.locator("#messages img.attachment-thumb")).to_have_count(1)

    upload_id = await row.get_attribute("data-upload-id")
    assert progress, "the bar is fed by upload_progress events over the WebSocket"
    assert {(event["id"], event["size"]) for event in progress} == {(upload_id, size)}
    assert progress[-1]["offset"] == size
    download = await bob.request.get(await attachment.get_attribute("href"))
    assert download.ok and await download.body() == picture.read_bytes()


async def test_upload_pauses_resumes_and_survives_a_reload(logged_in_page, room_slug, tmp_path):
    """A paused upload resumes where it stopped, even after a reload (choose the file again)
    and through a dropped connection (retried with backoff)."""
    data = tmp_path / "data.bin"
    data.write_bytes(os.urandom(3 * CHUNK))
    alice = await logged_in_page("alice")
    patch_offsets: list[int] = []
    hold = True  # while set, every PATCH after the first hangs, as on a stalled network
    drop_next = False  # when set, the next PATCH fails as if the connection were reset

    async def stall(route: Route, request: Request) -> None:
        nonlocal drop_next
        if request.method == "PATCH":
            patch_offsets.append(int(request.headers["upload-offset"]))
            if hold and len(patch_offsets) > 1:
                return  # never answered; the page aborts it (pause, reload)
            if drop_next:
                drop_next = False
                await route.abort("connectionreset")
                return
        await route.continue_()

    await alice.route("**/api/uploads/*", stall)
    await open_room(alice, room_slug)
    await alice.locator("#attach-input").set_input_files(data)

    row = alice.locator("#uploads li.upload")
    await expect(row).to_have_attribute("data-percent", "33")
    await row.get_by_role("button", name="Pause").click()
    await expect(row).to_have_attribute("data-state", "paused")
    await expect(row.locator(".upload-status")).to_have_text("paused at 33%")
    await row.get_by_role("button", name="Resume").click()
    await expect(row).to_have_attribute("data-state", "uploading")
    await _until(lambda: len(patch_offsets) == 3, "the resumed PATCH")

    await alice.reload()
    await expect(alice.locator("#status")).to_have_attribute("data-state", "live")
    await expect(row).to_have_attribute("data-state", "interrupted")
    hold, drop_next = False, True
    await alice.locator("#attach-input").set_input_files(data)  # the same file again

    await expect(row).to_have_attribute("data-state", "done")
    link = alice.locator("#messages li[data-id] a.attachment")
    await expect(link).to_have_text("data.bin")
    # Held, held again after Resume, dropped by the network after the reload, retried, last chunk.
    assert patch_offsets == [0, CHUNK, CHUNK, CHUNK, CHUNK, 2 * CHUNK], "resumed, never restarted"
    download = await alice.request.get(await link.get_attribute("href"))
    assert await download.body() == data.read_bytes()


async def _until(condition, what: str, timeout: float = 10) -> None:
    """Wait until ``condition()`` is true, polling; fail saying ``what`` after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"Waited {timeout} s for {what}", pytrace=False)
        await asyncio.sleep(0.02)
