"""Resumable uploads (tus 1.0), through project.asgi.application.

The wire contract (docs/contract.md), section 5.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import os
import time
import uuid
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command

from chat.models import Message
from chat.topic import RoomTopic
from realtime.models import ApiToken
from tests.asgi import csrf_token, http, joined, make_user, session_cookie
from uploads import files, service
from uploads.models import Upload
from uploads.protocol import clean_filename

pytestmark = pytest.mark.django_db(transaction=True)

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = "application/offset+octet-stream"


@pytest.fixture(autouse=True)
def upload_dirs(settings, tmp_path) -> Path:
    """Keep every test's media and partial files in its own temporary directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPLOADS_TEMP_DIR = tmp_path / "partial"
    return tmp_path


def metadata(**values: str) -> str:
    """Return an Upload-Metadata header: ``key base64(value)`` pairs."""
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in values.items())


async def token_client(user):
    """Return an API client authenticated by a fresh bearer token of ``user``."""
    _, raw = await ApiToken.aissue(user)
    return http(authorization=f"Bearer {raw}")


async def create(client, size: int, *, filename: str = "notes.txt", room: str = "general", **headers):
    """POST a new upload; return the response."""
    return await client.post(
        "/api/uploads/",
        headers={
            **TUS,
            "Upload-Length": str(size),
            "Upload-Metadata": metadata(filename=filename, room=room),
            **headers,
        },
    )


async def created(client, size: int, **kwargs) -> str:
    """Create an upload; return its URL."""
    response = await create(client, size, **kwargs)
    assert response.status_code == 201, response.text
    return response.headers["location"]


async def patch(client, url: str, offset: int, data, **headers):
    """PATCH ``data`` at ``offset``; return the response."""
    return await client.patch(
        url, content=data, headers={**TUS, "Upload-Offset": str(offset), "Content-Type": OCTETS, **headers}
    )


async def upload_all(client, data: bytes, chunk: int = 4, **kwargs) -> str:
    """Upload ``data`` in chunks of ``chunk`` bytes; return the upload URL."""
    url = await created(client, len(data), **kwargs)
    for offset in range(0, len(data), chunk):
        response = await patch(client, url, offset, data[offset : offset + chunk])
        assert response.status_code == 204, response.text
    return url


def assert_error(response, status: int, code: str) -> None:
    """Assert the API's JSON error, with the tus header every upload answer carries."""
    assert response.status_code == status, response.text
    assert response.json()["error"] == code and set(response.json()) == {"error", "detail"}


async def attachment_url(client, room: str = "general") -> str:
    """Return the attachment URL of the room's newest message."""
    messages = (await client.get(f"/api/rooms/{room}/messages")).json()["messages"]
    return messages[-1]["attachment"]["url"]


# -- the protocol -----------------------------------------------------------


async def test_options_advertises_version_extensions_and_limit_without_identity(settings):
    settings.UPLOADS_MAX_SIZE = 12345
    async with http() as client:
        response = await client.options("/api/uploads/")
    assert response.status_code == 204
    assert response.headers["tus-resumable"] == "1.0.0"
    assert response.headers["tus-version"] == "1.0.0"
    assert response.headers["tus-extension"] == "creation,termination,checksum"
    assert response.headers["tus-checksum-algorithm"] == "sha1"
    assert response.headers["tus-max-size"] == "12345"


async def test_create_patch_head_then_complete_and_download():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        response = await create(client, 10)
        assert response.status_code == 201 and response.headers["tus-resumable"] == "1.0.0"
        url = response.headers["location"]
        assert url.startswith("/api/uploads/")

        assert (await patch(client, url, 0, b"hello")).headers["upload-offset"] == "5"
        head = await client.head(url, headers=TUS)
        assert head.status_code == 200 and head.content == b""
        assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("5", "10")
        assert head.headers["cache-control"] == "no-store"
        done = await patch(client, url, 5, b"world")
        assert done.status_code == 204 and done.headers["upload-offset"] == "10"

        download = await client.get(await attachment_url(client))
    assert download.status_code == 200 and download.content == b"helloworld"
    upload = await Upload.objects.aget()
    assert upload.completed is not None and upload.stored_name == f"attachments/{upload.public_id}"
    assert not files.partial_path(upload.public_id).exists(), "the partial file moved into storage"


async def test_completion_posts_attachment_message_and_progress_goes_to_uploader_only():
    alice, bob = await make_user("alice"), await make_user("bob")
    async with (
        joined("/ws/rooms/elsewhere/", user=alice) as alice_ws,
        joined("/ws/rooms/general/", user=bob) as bob_ws,
        await token_client(alice) as client,
    ):
        url = await upload_all(client, b"0123456789", chunk=10)
        message = await bob_ws.receive_json_from()
        progress = await alice_ws.receive_json_from()
        assert await bob_ws.receive_nothing(0.1), "progress is for the uploader only"

    upload_id = url.rsplit("/", 1)[-1]
    assert progress == {"type": "upload_progress", "id": upload_id, "offset": 10, "size": 10}
    assert message["type"] == "message" and message["user"] == "alice" and message["text"] == "notes.txt"
    assert message["attachment"] == {"name": "notes.txt", "size": 10, "url": f"/api/uploads/{upload_id}/file"}


async def test_history_carries_the_attachment_and_plain_messages_keep_their_shape():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        await client.post("/api/rooms/general/messages", json={"text": "plain"})
        await upload_all(client, b"abc")
        messages = (await client.get("/api/rooms/general/messages")).json()["messages"]
    assert set(messages[0]) == {"type", "id", "room", "user", "text", "created"}
    assert messages[1]["attachment"]["name"] == "notes.txt" and messages[1]["id"] > messages[0]["id"]


async def test_session_requests_need_the_csrf_header_bearer_requests_do_not():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        assert_error(await create(client, 3), 403, "forbidden")
        url = await created(client, 3, **{"X-CSRFToken": await csrf_token(client)})
        assert_error(await patch(client, url, 0, b"abc"), 403, "forbidden")
        response = await patch(client, url, 0, b"abc", **{"X-CSRFToken": client.cookies["csrftoken"]})
    assert response.status_code == 204


async def test_zero_length_upload_completes_at_creation():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 0, filename="empty.txt")
        head = await client.head(url, headers=TUS)
        download = await client.get(await attachment_url(client))
    assert (head.headers["upload-offset"], head.headers["upload-length"]) == ("0", "0")
    assert download.status_code == 200 and download.content == b""


async def test_checksum_is_verified_per_chunk():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 6)
        wrong = base64.b64encode(hashlib.sha1(b"nope").digest()).decode()
        response = await patch(client, url, 0, b"abc", **{"Upload-Checksum": f"sha1 {wrong}"})
        assert response.status_code == 460 and response.json()["error"] == "checksum_mismatch"
        assert (await client.head(url, headers=TUS)).headers["upload-offset"] == "0"
        right = base64.b64encode(hashlib.sha1(b"abc").digest()).decode()
        response = await patch(client, url, 0, b"abc", **{"Upload-Checksum": f"sha1 {right}"})
        assert response.headers["upload-offset"] == "3"
        assert_error(await patch(client, url, 3, b"d", **{"Upload-Checksum": "md5 xyz="}), 400, "invalid")


async def test_delete_terminates_the_upload_and_removes_its_bytes():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 10)
        await patch(client, url, 0, b"abc")
        partial = files.partial_path((await Upload.objects.aget()).public_id)
        assert partial.exists()
        response = await client.delete(url, headers=TUS)
        assert response.status_code == 204 and response.headers["tus-resumable"] == "1.0.0"
        assert (await client.head(url, headers=TUS)).status_code == 404
    assert not partial.exists() and not await Upload.objects.aexists()


async def test_deleting_the_message_takes_the_attachment_with_it(upload_dirs):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        await upload_all(client, b"secret")
        url = await attachment_url(client)
        await (await Message.objects.aget()).adelete()
        assert_error(await client.get(url), 404, "not_found")
    assert not await Upload.objects.aexists()
    assert not [p for p in (upload_dirs / "media").rglob("*") if p.is_file()]


# -- bad input --------------------------------------------------------------


async def test_no_identity_is_401_json():
    async with http() as client:
        head = await client.head(f"/api/uploads/{uuid.uuid4().hex}", headers=TUS)
        download = await client.get(f"/api/uploads/{uuid.uuid4().hex}/file")
    assert head.status_code == 401 and head.headers["tus-resumable"] == "1.0.0"
    assert_error(download, 401, "unauthorized")


async def test_no_identity_post_is_refused_by_csrf_like_every_unsafe_api_call():
    async with http() as client:
        response = await create(client, 3)
    assert_error(response, 403, "forbidden")
    assert not await Upload.objects.aexists()


@pytest.mark.parametrize("method", ["POST", "HEAD", "PATCH", "DELETE"])
async def test_missing_tus_resumable_is_412(method):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = "/api/uploads/" if method == "POST" else await created(client, 3)
        response = await client.request(method, url, headers={"Upload-Length": "3", "Content-Type": OCTETS})
    assert response.status_code == 412
    assert response.headers["tus-version"] == "1.0.0" and response.headers["tus-resumable"] == "1.0.0"
    if method != "HEAD":
        assert response.json()["error"] == "unsupported_version"


async def test_wrong_offset_is_409_and_nothing_is_written():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 10)
        await patch(client, url, 0, b"abc")
        assert_error(await patch(client, url, 0, b"abc"), 409, "conflict")
        assert_error(await patch(client, url, 7, b"abc"), 409, "conflict")
        assert (await client.head(url, headers=TUS)).headers["upload-offset"] == "3"


async def test_unknown_upload_is_404():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        for url in (
            f"/api/uploads/{uuid.uuid4().hex}",
            "/api/uploads/not-a-uuid",
            "/api/uploads/..%2F..%2Fx",
        ):
            assert (await client.head(url, headers=TUS)).status_code == 404
            assert_error(await patch(client, url, 0, b"x"), 404, "not_found")
            assert_error(await client.delete(url, headers=TUS), 404, "not_found")
            assert (await client.get(f"{url}/file")).status_code == 404


async def test_another_user_cannot_head_patch_delete_or_download_an_upload():
    alice, bob = await make_user("alice"), await make_user("bob")
    async with await token_client(alice) as alice_client, await token_client(bob) as bob_client:
        url = await created(alice_client, 6)
        await patch(alice_client, url, 0, b"abc")
        assert (await bob_client.head(url, headers=TUS)).status_code == 404
        assert_error(await patch(bob_client, url, 3, b"def"), 404, "not_found")
        assert_error(await bob_client.delete(url, headers=TUS), 404, "not_found")
        assert_error(await bob_client.get(f"{url}/file"), 404, "not_found")
        assert_error(await alice_client.get(f"{url}/file"), 404, "not_found")  # unfinished: no one
        assert (await alice_client.head(url, headers=TUS)).headers["upload-offset"] == "3"


async def test_download_needs_room_access(monkeypatch):
    alice, bob = await make_user("alice"), await make_user("bob")
    async with await token_client(alice) as alice_client, await token_client(bob) as bob_client:
        await upload_all(alice_client, b"for the room")
        url = await attachment_url(alice_client)
        assert (await bob_client.get(url)).content == b"for the room", "bob may read the room"
        monkeypatch.setattr(RoomTopic, "can_join", lambda topic, user: user.username == "alice")
        assert_error(await bob_client.get(url), 403, "forbidden")
        assert (await alice_client.get(url)).status_code == 200


async def test_room_the_user_may_not_join_is_403(monkeypatch):
    monkeypatch.setattr(RoomTopic, "can_join", lambda topic, user: topic.slug != "staff")
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        assert_error(await create(client, 3, room="staff"), 403, "forbidden")
    assert not await Upload.objects.aexists()


async def test_upload_length_over_the_limit_is_413(settings):
    settings.UPLOADS_MAX_SIZE = 100
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        assert (await create(client, 100)).status_code == 201
        assert_error(await create(client, 101), 413, "too_large")


async def test_bytes_beyond_upload_length_are_413_and_nothing_is_kept():
    alice = await make_user("alice")

    async def streamed(data: bytes):
        yield data  # no Content-Length: the server counts as it copies

    async with await token_client(alice) as client:
        url = await created(client, 5)
        assert_error(await patch(client, url, 0, b"abcdef"), 413, "too_large")
        assert_error(await patch(client, url, 0, streamed(b"abcdef")), 413, "too_large")
        assert (await client.head(url, headers=TUS)).headers["upload-offset"] == "0"
        assert (await patch(client, url, 0, b"abcde")).status_code == 204
        assert_error(await patch(client, url, 5, b"f"), 413, "too_large")
        assert (await client.get(await attachment_url(client))).content == b"abcde"


async def test_patch_with_another_content_type_is_415():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 3)
        response = await patch(client, url, 0, b"abc", **{"Content-Type": "application/octet-stream"})
    assert_error(response, 415, "unsupported_media_type")


@pytest.mark.parametrize(
    "headers",
    [
        {"Upload-Metadata": "filename bm90ZXM=,room !!!notbase64"},
        {"Upload-Metadata": "filename bm90ZXM="},  # no room
        {"Upload-Metadata": metadata(filename="a.txt", room="Not A Slug")},
        {"Upload-Metadata": metadata(filename="a.txt", room="../lobby")},
        {"Upload-Metadata": "filename a b c"},
        {"Upload-Metadata": "room " + base64.b64encode(b"\xff\xfe").decode()},  # not UTF-8
        {"Upload-Length": "-1"},
        {"Upload-Length": "ten"},
        {"Upload-Length": ""},
    ],
)
async def test_bad_creation_headers_are_400(headers):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        response = await client.post(
            "/api/uploads/",
            headers={**TUS, "Upload-Length": "3", "Upload-Metadata": metadata(room="general"), **headers},
        )
    assert_error(response, 400, "invalid")


async def test_bad_offset_header_is_400():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 3)
        for bad in ("", "-1", "x", "1e3"):
            assert_error(await patch(client, url, 0, b"a", **{"Upload-Offset": bad}), 400, "invalid")


async def test_filenames_cannot_reach_the_filesystem():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        await upload_all(client, b"x", filename="../../../etc/passwd")
        await upload_all(client, b"y", filename="..\\..\\boot.ini")
        names = [
            m["attachment"]["name"]
            for m in (await client.get("/api/rooms/general/messages")).json()["messages"]
        ]
    assert names == ["passwd", "boot.ini"]
    async for upload in Upload.objects.all():
        assert upload.stored_name == f"attachments/{upload.public_id}"


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("report.pdf", "report.pdf"),
        ("../../etc/passwd", "passwd"),
        ("C:\\Users\\me\\cv.docx", "cv.docx"),
        ("..", "file"),
        ("", "file"),
        (".bashrc", "bashrc"),
        ("invoice\u202egnp.exe", "invoicegnp.exe"),  # a bidi override cannot disguise the extension
        ("a\x00b\nc.txt", "abc.txt"),
        ("  spaced   out  .txt ", "spaced out .txt"),
        ("x" * 300 + ".tar", "x" * 196 + ".tar"),
    ],
)
def test_clean_filename(raw, clean):
    assert clean_filename(raw) == clean


@pytest.mark.parametrize(
    ("filename", "content_type", "disposition"),
    [
        ("photo.png", "image/png", "inline"),
        ("photo.JPG", "image/jpeg", "inline"),
        ("drawing.svg", "image/svg+xml", "attachment"),  # SVG can carry script
        ("page.html", "text/html", "attachment"),
        ("archive.tar.gz", "application/octet-stream", "attachment"),
        ("no-extension", "application/octet-stream", "attachment"),
    ],
)
async def test_download_type_comes_from_the_name_never_the_client(filename, content_type, disposition):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 4, filename=filename, **{"Content-Type": "text/html"})
        await patch(client, url, 0, b"<svg")
        response = await client.get(await attachment_url(client))
    assert response.headers["content-type"] == content_type
    assert response.headers["content-disposition"].startswith(disposition)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


async def test_download_streams_asynchronously_in_blocks():
    """Django 5.2 turns a synchronous file iterator into one list under ASGI; ours stays a stream."""
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        await upload_all(client, b"z" * 200_000, chunk=200_000)
    upload = await Upload.objects.aget()
    response = await asyncio.to_thread(files.file_response, upload)
    assert response.is_async
    blocks = [block async for block in response]
    await asyncio.to_thread(response.close)
    assert max(map(len, blocks)) <= files.BLOCK and b"".join(blocks) == b"z" * 200_000


# -- quota, locking, progress, cleanup --------------------------------------


async def test_unfinished_uploads_per_user_are_limited_with_429(settings):
    settings.UPLOADS_MAX_ACTIVE_PER_USER = 2
    alice, bob = await make_user("alice"), await make_user("bob")
    async with await token_client(alice) as client, await token_client(bob) as bob_client:
        first = await created(client, 3)
        await created(client, 3)
        assert_error(await create(client, 3), 429, "too_many_uploads")
        assert (await create(bob_client, 3)).status_code == 201, "the quota is per user"
        await patch(client, first, 0, b"abc")  # finishing one frees a slot
        assert (await create(client, 3)).status_code == 201


async def test_a_patch_while_another_writes_the_same_upload_is_423():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        url = await created(client, 3)
        lock = service._lock_of(await Upload.objects.aget())
        await lock.acquire()
        try:
            assert_error(await patch(client, url, 0, b"abc"), 423, "locked")
            assert_error(await client.delete(url, headers=TUS), 423, "locked")
        finally:
            lock.release()
        assert (await patch(client, url, 0, b"abc")).status_code == 204


async def test_progress_is_throttled_and_the_final_offset_always_arrives(settings):
    settings.UPLOADS_PROGRESS_INTERVAL = 60
    alice = await make_user("alice")
    async with joined("/ws/rooms/general/", user=alice) as ws, await token_client(alice) as client:
        url = await upload_all(client, b"0123456789", chunk=2)
        first = await ws.receive_json_from()
        final = await ws.receive_json_from()
        assert (await ws.receive_json_from())["type"] == "message"
    upload_id = url.rsplit("/", 1)[-1]
    assert first == {"type": "upload_progress", "id": upload_id, "offset": 2, "size": 10}
    assert final == {"type": "upload_progress", "id": upload_id, "offset": 10, "size": 10}


async def test_progress_inside_the_interval_is_sent_late_not_dropped(settings):
    settings.UPLOADS_PROGRESS_INTERVAL = 0.2
    alice = await make_user("alice")
    async with joined("/ws/rooms/general/", user=alice) as ws, await token_client(alice) as client:
        url = await created(client, 10)
        for offset in range(0, 6, 2):
            await patch(client, url, offset, b"ab")
        offsets = [(await ws.receive_json_from())["offset"]]
        while offsets[-1] < 6:  # the last report comes at the end of its interval
            offsets.append((await ws.receive_json_from(timeout=5))["offset"])
    # Typically [2, 6]: 4 was coalesced; on a slow machine 4 may have had an interval of its own.
    assert offsets[0] == 2 and offsets == sorted(set(offsets)) and offsets[-1] == 6


async def test_cleanup_uploads_removes_abandoned_and_orphaned_uploads(settings, upload_dirs):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        stale = await created(client, 10)
        await patch(client, stale, 0, b"abc")
        fresh = await created(client, 10)
        await upload_all(client, b"kept")
    stale_upload = await Upload.objects.aget(pk=uuid.UUID(stale.rsplit("/", 1)[-1]))
    long_ago = stale_upload.updated.replace(year=2000)
    await Upload.objects.filter(pk=stale_upload.pk).aupdate(updated=long_ago)
    stray = Path(settings.UPLOADS_TEMP_DIR) / f"{uuid.uuid4().hex}.part"
    stray.write_bytes(b"left behind by a crash")
    os.utime(stray, (time.time() - 3 * 3600,) * 2)

    out = io.StringIO()
    await sync_to_async(call_command)("cleanup_uploads", "--older-than", "2", stdout=out)

    assert not await Upload.objects.filter(pk=stale_upload.pk).aexists()
    assert not files.partial_path(stale_upload.public_id).exists() and not stray.exists()
    assert await Upload.objects.filter(pk=uuid.UUID(fresh.rsplit("/", 1)[-1])).aexists()
    assert await Upload.objects.filter(completed__isnull=False).acount() == 1
    assert "Removed 1 abandoned upload(s), 0 attachment(s) without a message and 1 stray" in out.getvalue()
