"""Chatting over real WebSockets: hello and presence, messages, typing, ping."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.live_client import csrf_headers, joined, login, recv_event, recv_json, send_json, ws_connect

pytestmark = pytest.mark.slow


async def test_logged_in_user_receives_hello_then_presence(live_server, room):
    async with login(live_server, "alice") as alice:
        me = (await alice.get("/api/me")).json()
        async with ws_connect(live_server, alice, f"/ws/rooms/{room}/") as ws:
            assert await recv_json(ws) == {"type": "hello", "user": me, "room": room, "last_id": 0}
            assert await recv_json(ws) == {"type": "presence", "users": ["alice"]}


async def test_api_me_answers_for_the_session(alice):
    response = await alice.get("/api/me")

    assert response.status_code == 200
    assert response.json()["username"] == "alice"
    assert set(response.json()) == {"id", "username"}


async def test_hello_reports_the_newest_message_id_of_the_room(live_server, alice, room):
    posted = await alice.post(f"/api/rooms/{room}/messages", json={"text": "hi"}, headers=csrf_headers(alice))

    async with ws_connect(live_server, alice, f"/ws/rooms/{room}/") as ws:
        assert (await recv_json(ws))["last_id"] == posted.json()["id"]


async def test_both_users_receive_every_message_with_increasing_ids(live_server, alice, bob, room):
    path = f"/ws/rooms/{room}/"
    async with ws_connect(live_server, alice, path) as ws_alice, ws_connect(live_server, bob, path) as ws_bob:
        await joined(ws_alice)
        await joined(ws_bob)
        seen_by_alice, seen_by_bob = [], []
        for sender, text in [(ws_alice, "hi bob"), (ws_bob, "hi alice"), (ws_alice, "how are you?")]:
            await send_json(sender, {"type": "message", "text": text})
            seen_by_alice.append(await recv_event(ws_alice))
            seen_by_bob.append(await recv_event(ws_bob))

    assert seen_by_alice == seen_by_bob
    assert [(e["user"], e["text"]) for e in seen_by_alice] == [
        ("alice", "hi bob"),
        ("bob", "hi alice"),
        ("alice", "how are you?"),
    ]
    ids = [e["id"] for e in seen_by_alice]
    assert ids == sorted(set(ids))
    for event in seen_by_alice:
        assert set(event) == {"type", "id", "room", "user", "text", "created"}
        assert event["type"] == "message" and event["room"] == room
        assert datetime.fromisoformat(event["created"]).utcoffset() is not None


async def test_message_text_is_trimmed_before_it_is_stored(live_server, alice, room):
    async with ws_connect(live_server, alice, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        await send_json(ws, {"type": "message", "text": "  padded  "})
        assert (await recv_event(ws))["text"] == "padded"


async def test_others_see_typing_but_the_typist_does_not(live_server, alice, bob, room):
    path = f"/ws/rooms/{room}/"
    async with ws_connect(live_server, alice, path) as ws_alice, ws_connect(live_server, bob, path) as ws_bob:
        await joined(ws_alice)
        await joined(ws_bob)
        await send_json(ws_alice, {"type": "typing"})
        await send_json(ws_alice, {"type": "message", "text": "done typing"})

        assert await recv_event(ws_bob) == {"type": "typing", "user": "alice"}
        # Both travel through the room's group in order: her own typing would come first.
        assert (await recv_event(ws_alice))["type"] == "message"


async def test_ping_is_answered_with_pong(live_server, alice, room):
    async with ws_connect(live_server, alice, f"/ws/rooms/{room}/") as ws:
        await joined(ws)
        await send_json(ws, {"type": "ping"})
        assert await recv_event(ws) == {"type": "pong"}


async def test_second_user_joining_reaches_the_first_as_presence_diff(live_server, alice, bob, room):
    path = f"/ws/rooms/{room}/"
    async with ws_connect(live_server, alice, path) as ws_alice:
        await joined(ws_alice)
        async with ws_connect(live_server, bob, path) as ws_bob:
            await joined(ws_bob)
            diff = await recv_event(ws_alice, timeout=3, skip=())
            assert diff == {"type": "presence_diff", "joins": ["bob"], "leaves": []}
