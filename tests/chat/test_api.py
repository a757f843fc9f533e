"""The HTTP API (the wire contract (docs/contract.md), section 2), through project.asgi.application."""

from __future__ import annotations

import pytest
from django.test import override_settings

from chat.models import Message, Room
from realtime.models import ApiToken
from tests.asgi import http, joined, make_user, session_cookie

pytestmark = pytest.mark.django_db(transaction=True)


async def token_client(user):
    """Return an API client authenticated by a fresh bearer token of ``user``."""
    _, raw = await ApiToken.aissue(user)
    return http(authorization=f"Bearer {raw}")


async def test_me_with_session_and_with_token():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        assert (await client.get("/api/me")).json() == {"id": alice.pk, "username": "alice"}
    async with await token_client(alice) as client:
        assert (await client.get("/api/me")).json() == {"id": alice.pk, "username": "alice"}


async def test_no_identity_is_401_json():
    async with http() as client:
        response = await client.get("/api/me")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


async def test_issue_token_over_http_and_use_it():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        response = await client.post("/api/tokens")
    assert response.status_code == 201
    raw = response.json()["token"]
    assert not await ApiToken.objects.filter(digest=raw).aexists(), "tokens are hashed at rest"
    async with http(authorization=f"Bearer {raw}") as client:
        assert (await client.get("/api/me")).status_code == 200


async def test_session_post_needs_csrf_token_but_bearer_post_does_not():
    alice = await make_user("alice")
    async with http(cookie=await session_cookie(alice)) as client:
        response = await client.post("/api/rooms/general/messages", json={"text": "hi"})
    assert response.status_code == 403 and response.json()["error"] == "forbidden"
    async with await token_client(alice) as client:
        response = await client.post("/api/rooms/general/messages", json={"text": "hi"})
    assert response.status_code == 201


async def test_posted_message_reaches_websocket_subscribers():
    alice, bob = await make_user("alice"), await make_user("bob")
    async with joined("/ws/rooms/general/", user=bob) as b, await token_client(alice) as client:
        response = await client.post("/api/rooms/general/messages", json={"text": "over http"})
        assert response.status_code == 201
        assert await b.receive_json_from() == response.json()
    assert response.json()["user"] == "alice" and response.json()["room"] == "general"


async def test_messages_list_newest_limit_or_after_id():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    ids = [(await Message.objects.acreate(room=room, user=alice, text=f"m{n}")).pk for n in range(60)]
    async with await token_client(alice) as client:
        default = (await client.get("/api/rooms/general/messages")).json()["messages"]
        newest = (await client.get("/api/rooms/general/messages?limit=5")).json()["messages"]
        after = (await client.get(f"/api/rooms/general/messages?after={ids[9]}&limit=3")).json()["messages"]
        empty = (await client.get("/api/rooms/nothing-here/messages")).json()["messages"]
    assert [m["id"] for m in default] == ids[-50:]
    assert [m["id"] for m in newest] == ids[-5:]
    assert [m["id"] for m in after] == ids[10:13]
    assert empty == []


@pytest.mark.parametrize("query", ["limit=0", "limit=201", "limit=x", "limit=-1", "after=x", "after=-3"])
async def test_bad_list_parameters_are_400(query):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        response = await client.get(f"/api/rooms/general/messages?{query}")
    assert response.status_code == 400 and response.json()["error"] == "invalid"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"not json", 400, "bad_json"),
        (b"[1]", 400, "bad_json"),
        (b'{"text": 3}', 400, "invalid"),
        (b'{"text": " "}', 400, "invalid"),
        (b'{"nope": 1}', 400, "invalid"),
        (b'{"text": "' + b"x" * 2001 + b'"}', 413, "too_large"),
        (b'{"text": "x", "pad": "' + b"y" * 70_000 + b'"}', 413, "too_large"),
    ],
)
async def test_bad_post_bodies_get_their_error(body, status, code):
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        response = await client.post(
            "/api/rooms/general/messages", content=body, headers={"content-type": "application/json"}
        )
    assert (response.status_code, response.json()["error"]) == (status, code)
    assert await Message.objects.acount() == 0


@override_settings(REALTIME_RATE_LIMIT="3/10s")
async def test_http_and_websocket_share_the_rate_limit():
    alice = await make_user("alice")
    async with joined("/ws/rooms/general/", user=alice) as a, await token_client(alice) as client:
        for n in range(2):
            await a.send_json_to({"type": "message", "text": f"ws{n}"})
            await a.receive_json_from()
        assert (await client.post("/api/rooms/general/messages", json={"text": "3rd"})).status_code == 201
        response = await client.post("/api/rooms/general/messages", json={"text": "4th"})
    assert response.status_code == 429 and response.json()["error"] == "rate_limited"
    assert await Message.objects.acount() == 3


async def test_unknown_api_path_and_bad_slug_are_404_json():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        for path in ("/api/nope", "/api/rooms/Bad_Slug/messages"):
            response = await client.get(path)
            assert response.status_code == 404 and response.json()["error"] == "not_found"


async def test_wrong_method_is_405_json():
    alice = await make_user("alice")
    async with await token_client(alice) as client:
        response = await client.delete("/api/rooms/general/messages")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


async def test_rooms_and_presence_count_live_sockets():
    alice, bob = await make_user("alice"), await make_user("bob")
    client = await token_client(alice)
    async with joined("/ws/rooms/lobby/", user=alice), joined("/ws/rooms/lobby/", user=bob), client:
        rooms = (await client.get("/api/rooms")).json()["rooms"]
        users = (await client.get("/api/rooms/lobby/presence")).json()["users"]
        health = (await client.get("/healthz")).json()
    assert {"slug": "lobby", "name": "Lobby", "online": 2} in rooms
    assert users == ["alice", "bob"]
    assert health == {
        "status": "ok",
        "channel_layer": "realtime.layers.FastInMemoryChannelLayer",
        "connections": 2,
    }


async def test_pages_need_login_and_render_for_users():
    alice = await make_user("alice")
    async with http() as client:
        assert (await client.get("/")).status_code == 302
        assert (await client.get("/rooms/general/")).status_code == 302
    async with http(cookie=await session_cookie(alice)) as client:
        assert (await client.get("/")).status_code == 200
        page = await client.get("/rooms/general/")
    assert page.status_code == 200 and "client-config" in page.text
