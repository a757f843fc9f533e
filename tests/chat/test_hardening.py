"""Bounded growth in the chat: rooms a user may create, rooms listed a page at a time."""

from __future__ import annotations

import asyncio
import base64

import pytest
from django.test import override_settings

from chat.models import Room
from realtime.models import ApiToken
from tests.asgi import csrf_token, http, joined, make_user, session_cookie, ws
from uploads.models import Upload

pytestmark = pytest.mark.django_db(transaction=True)


def metadata(room: str) -> str:
    """Return a tus Upload-Metadata header naming ``room``."""
    return f"filename {base64.b64encode(b'a.txt').decode()},room {base64.b64encode(room.encode()).decode()}"


async def refused(comm) -> bool:
    """Return whether the handshake was closed before accept (HTTP 403 on a real server)."""
    connected, _ = await comm.connect()
    if connected:
        await comm.disconnect()
    return not connected


def assert_json_error(response, status: int, code: str) -> None:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.json()["error"] == code and set(response.json()) == {"error", "detail"}


@override_settings(CHAT_ROOMS_PER_USER_PER_HOUR=2)
async def test_rooms_a_user_may_create_per_hour_are_limited_on_every_transport():
    alice, bob = await make_user("alice"), await make_user("bob")
    await Room.objects.acreate(slug="existing")
    for slug in ("new-1", "new-2"):  # two creations allowed: by connecting
        async with joined(f"/ws/rooms/{slug}/", user=alice):
            pass
    assert await Room.objects.filter(slug__in=["new-1", "new-2"]).acount() == 2

    cookie = await session_cookie(alice)
    assert await refused(ws("/ws/rooms/new-3/", cookie=cookie))
    async with http(cookie=cookie) as client:
        assert_json_error(await client.get("/sse/rooms/new-3/"), 403, "forbidden")
        csrf = {"x-csrftoken": await csrf_token(client)}
        post = await client.post("/api/rooms/new-3/messages", json={"text": "hi"}, headers=csrf)
        assert_json_error(post, 429, "rate_limited")
        # Existing rooms are never affected, created by anyone.
        for slug in ("existing", "new-1"):
            posted = await client.post(f"/api/rooms/{slug}/messages", json={"text": "hi"}, headers=csrf)
            assert posted.status_code == 201
        # Reading a room that does not exist creates nothing and is not refused.
        assert (await client.get("/api/rooms/new-3/messages")).json() == {"messages": []}
    async with joined("/ws/rooms/existing/", user=alice):
        pass
    assert not await Room.objects.filter(slug="new-3").aexists()

    # The allowance is per user: bob creates new-3 by posting, then alice may join it.
    _, raw = await ApiToken.aissue(bob)
    async with http(authorization=f"Bearer {raw}") as script:
        assert (await script.post("/api/rooms/new-3/messages", json={"text": "mine"})).status_code == 201
    async with joined("/ws/rooms/new-3/", user=alice):
        pass


async def page_walk(client, first: str) -> list[list[str]]:
    """Follow ``next`` from ``first``; return the slugs of each page."""
    pages, url = [], first
    while url:
        body = (await client.get(url)).json()
        assert set(body) == {"rooms", "next"}
        pages.append([room["slug"] for room in body["rooms"]])
        url = body["next"]
    return pages


async def test_rooms_are_listed_a_page_at_a_time_online_rooms_first():
    alice = await make_user("alice")
    await Room.objects.abulk_create(Room(slug=f"room-{n:02}") for n in range(7))
    async with joined("/ws/rooms/room-05/", user=alice), http(cookie=await session_cookie(alice)) as client:
        pages = await page_walk(client, "/api/rooms?limit=3")
        assert pages == [["room-05", "room-00", "room-01"], ["room-02", "room-03", "room-04"], ["room-06"]]
        default = (await client.get("/api/rooms")).json()
        assert len(default["rooms"]) == 7 and default["next"] is None
        assert default["rooms"][0] == {"slug": "room-05", "name": "Room 05", "online": 1}
        assert (await client.get("/api/rooms?page=9")).json() == {"rooms": [], "next": None}
        for bad in ("page=0", "page=" + "9" * 5000, "limit=201", "limit=" + "1" * 5000, "page=x"):
            assert_json_error(await client.get(f"/api/rooms?{bad}"), 400, "invalid")


async def test_the_lobby_pages_its_rooms():
    alice = await make_user("alice")
    await Room.objects.abulk_create(Room(slug=f"room-{n:03}") for n in range(55))
    async with http(cookie=await session_cookie(alice)) as client:
        first = await client.get("/")
        second = await client.get("/?page=2")
        bad = await client.get("/?page=nope")
    assert first.status_code == 200 and "room-049" in first.text and "room-050" not in first.text
    assert 'href="?page=2"' in first.text and "page=1&amp;limit=50" in first.text
    assert "room-050" in second.text and "room-049" not in second.text and 'href="?page=1"' in second.text
    assert bad.status_code == 200 and "room-000" in bad.text


async def test_an_upload_to_a_new_room_counts_as_creating_it(settings, tmp_path):
    # One override only: the settings fixture's, undone after the test (an override_settings
    # decorator around it would be undone first, and the fixture would then restore it).
    settings.CHAT_ROOMS_PER_USER_PER_HOUR = 2
    settings.MEDIA_ROOT, settings.UPLOADS_TEMP_DIR = tmp_path / "media", tmp_path / "partial"
    # Slugs of its own: chat.service remembers rooms it saw exist, across tests.
    alice = await make_user("alice")
    await Room.objects.acreate(slug="existing")
    _, raw = await ApiToken.aissue(alice)
    async with http(authorization=f"Bearer {raw}") as client:
        for room, status in [("upload-1", 201), ("upload-2", 201), ("upload-3", 429), ("existing", 201)]:
            response = await client.post(
                "/api/uploads/",
                headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3", "Upload-Metadata": metadata(room)},
            )
            assert response.status_code == status, (room, response.text)
        assert response.headers["Tus-Resumable"] == "1.0.0"
        refusal = await client.post(
            "/api/uploads/",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "3", "Upload-Metadata": metadata("upload-4")},
        )
        assert_json_error(refusal, 429, "rate_limited")
    created = Room.objects.filter(slug__startswith="upload-").values_list("slug", flat=True)
    assert {slug async for slug in created} == {"upload-1", "upload-2"}
    rooms = Upload.objects.values_list("room", flat=True)
    assert {room async for room in rooms} == {"upload-1", "upload-2", "existing"}


@override_settings(CHAT_ROOMS_PER_USER_PER_HOUR=2)
async def test_many_connections_and_posts_racing_into_one_new_room_count_once():
    alice = await make_user("alice")
    cookie = await session_cookie(alice)
    sockets = [ws("/ws/rooms/crowded/", cookie=cookie) for _ in range(10)]
    assert all(ok for ok, _ in await asyncio.gather(*(s.connect() for s in sockets)))
    async with http(cookie=cookie) as client:
        csrf = {"x-csrftoken": await csrf_token(client)}
        posts = await asyncio.gather(
            *(client.post("/api/rooms/busy/messages", json={"text": "hi"}, headers=csrf) for _ in range(10))
        )
        assert [p.status_code for p in posts] == [201] * 10
        # Two rooms created (crowded, busy): the allowance is spent.
        refused_post = await client.post("/api/rooms/third/messages", json={"text": "hi"}, headers=csrf)
        assert_json_error(refused_post, 429, "rate_limited")
    for s in sockets:
        await s.disconnect()


async def test_a_form_body_sent_to_a_json_endpoint_is_a_json_400_with_a_session_or_a_token():
    """A multipart body was parsed from the stream first, and the view's read of the body raised: a 500."""
    alice = await make_user("alice")
    _, raw = await ApiToken.aissue(alice)
    bodies = [
        {"content": b"anything", "headers": {"content-type": "multipart/form-data; boundary=zz"}},
        {"files": {"text": ("a.txt", b"hi")}, "data": {"text": "hi"}},
        {"data": {"text": "hi"}},
    ]
    async with (
        http(cookie=await session_cookie(alice)) as browser,
        http(authorization=f"Bearer {raw}") as script,
    ):
        csrf = {"x-csrftoken": await csrf_token(browser)}
        for client, extra in ((browser, csrf), (script, {})):
            for body in bodies:
                headers = {**body.get("headers", {}), **extra}
                response = await client.post(
                    "/api/rooms/forms/messages",
                    headers=headers,
                    **{k: v for k, v in body.items() if k != "headers"},
                )
                assert_json_error(response, 400, "bad_json")
        # A form in another charset than UTF-8: Django refuses to decode it.
        latin = {"content-type": "application/x-www-form-urlencoded; charset=latin-1"}
        response = await script.post("/api/rooms/forms/messages", content=b"text=caf\xe9", headers=latin)
        assert_json_error(response, 400, "invalid")
    assert not await Room.objects.filter(slug="forms").aexists()
