"""Resumable uploads against a real Daphne with a real tus client (tuspy).

The server of this module keeps its media in a temporary directory, so the
suite never writes uploads into the working tree.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
import pytest
from tusclient.client import TusClient
from websockets.asyncio.client import ClientConnection

from tests.conftest import LiveServer, running_server
from tests.live_client import csrf_headers, joined, login, recv_event, ws_connect

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(scope="module")
def upload_server(tmp_path_factory) -> LiveServer:
    """A Daphne whose uploads and partial files live in a temporary directory."""
    root = tmp_path_factory.mktemp("uploads-live")
    with running_server(root, DJANGO_MEDIA_ROOT=str(root / "media")) as server:
        yield server


@pytest.fixture(scope="module")
def token(upload_server: LiveServer) -> str:
    """Return an API token for alice, the uploader."""
    return upload_server.create_token("alice")


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    """A 5 MiB file of random bytes (and a tail, so chunks do not divide it evenly)."""
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(5 * MiB + 12_345))
    return path


def tus_client(server: LiveServer, token: str) -> TusClient:
    """Return a tuspy client that authenticates as a script does, with a bearer token."""
    return TusClient(f"{server.url}/api/uploads/", headers={"Authorization": f"Bearer {token}"})


async def progress_until(ws: ClientConnection, offset: int) -> list[dict[str, Any]]:
    """Collect upload_progress events until one reports at least ``offset``; return them."""
    seen = []
    while not seen or seen[-1]["offset"] < offset:
        event = await recv_event(ws, timeout=10)
        if event["type"] == "upload_progress":
            seen.append(event)
    return seen


async def test_tuspy_upload_interrupted_then_resumed_arrives_byte_for_byte(
    upload_server, token, big_file, room
):
    size = big_file.stat().st_size
    metadata = {"filename": "big.bin", "room": room}
    alice_path = f"/ws/rooms/lobby/?access_token={token}"
    async with (
        login(upload_server, "bob") as bob,
        ws_connect(upload_server, None, alice_path, origin=None) as alice_ws,
        ws_connect(upload_server, bob, f"/ws/rooms/{room}/") as bob_ws,
    ):
        await joined(alice_ws)
        await joined(bob_ws)

        # Two 1 MiB chunks, then the client goes away (process killed, laptop closed).
        first = tus_client(upload_server, token).uploader(
            file_path=str(big_file), chunk_size=MiB, metadata=metadata, upload_checksum=True
        )
        await asyncio.to_thread(first.upload, 2 * MiB)
        before = await progress_until(alice_ws, 2 * MiB)

        # A new client, knowing only the URL, asks the server where to resume.
        second = tus_client(upload_server, token).uploader(
            file_path=str(big_file), url=first.url, chunk_size=MiB, upload_checksum=True
        )
        assert second.offset == 2 * MiB
        await asyncio.to_thread(second.upload)
        after = await progress_until(alice_ws, size)
        message = await recv_event(bob_ws, timeout=10)

        download = await bob.get(message["attachment"]["url"])

    upload_id = first.url.rsplit("/", 1)[-1]
    offsets = [event["offset"] for event in before + after]
    assert offsets == sorted(offsets) and offsets[-1] == size
    assert {(event["id"], event["size"]) for event in before + after} == {(upload_id, size)}
    assert message["type"] == "message" and message["user"] == "alice"
    assert message["attachment"] == {
        "name": "big.bin",
        "size": size,
        "url": f"/api/uploads/{upload_id}/file",
    }
    assert download.status_code == 200
    assert download.headers["content-type"] == "application/octet-stream"
    assert download.headers["x-content-type-options"] == "nosniff"
    assert hashlib.sha256(download.content).digest() == hashlib.sha256(big_file.read_bytes()).digest()


async def test_a_patch_cut_mid_body_keeps_nothing_of_it_and_the_upload_resumes(
    upload_server, token, big_file, room
):
    client = tus_client(upload_server, token)
    uploader = client.uploader(file_path=str(big_file), chunk_size=MiB, metadata={"room": room})
    await asyncio.to_thread(uploader.upload, MiB)

    # The network drops half-way through the next PATCH body.
    reader, writer = await asyncio.open_connection("127.0.0.1", upload_server.port)
    path = uploader.url.removeprefix(upload_server.url)
    writer.write(
        (
            f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1:{upload_server.port}\r\n"
            f"Authorization: Bearer {token}\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: {MiB}\r\n"
            f"Content-Type: application/offset+octet-stream\r\nContent-Length: {MiB}\r\n\r\n"
        ).encode()
        + big_file.read_bytes()[MiB : MiB + 300_000]
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async with httpx.AsyncClient(
        base_url=upload_server.url, headers={"Authorization": f"Bearer {token}"}
    ) as http:
        head = await http.head(path, headers=TUS)
        assert head.headers["upload-offset"] == str(MiB)
        resumed = client.uploader(file_path=str(big_file), url=uploader.url, chunk_size=MiB)
        await asyncio.to_thread(resumed.upload)
        head = await http.head(path, headers=TUS)
    assert head.headers["upload-offset"] == head.headers["upload-length"] == str(big_file.stat().st_size)


async def test_browser_style_session_upload_sends_the_csrf_header(upload_server, room):
    encoded = ",".join(
        f"{key} {base64.b64encode(value.encode()).decode()}"
        for key, value in {"filename": "hi.txt", "room": room}.items()
    )
    async with login(upload_server, "alice") as alice:
        create = {**TUS, "Upload-Length": "2", "Upload-Metadata": encoded}
        refused = await alice.post("/api/uploads/", headers=create)
        response = await alice.post("/api/uploads/", headers={**create, **csrf_headers(alice)})
        patched = await alice.patch(
            response.headers["location"],
            content=b"hi",
            headers={
                **TUS,
                **csrf_headers(alice),
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        )
        messages = (await alice.get(f"/api/rooms/{room}/messages")).json()["messages"]
        download = await alice.get(messages[-1]["attachment"]["url"])
    assert refused.status_code == 403 and response.status_code == 201
    assert patched.status_code == 204 and patched.headers["upload-offset"] == "2"
    assert download.content == b"hi" and download.headers["content-disposition"].startswith("attachment")
