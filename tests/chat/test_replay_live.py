"""Resuming a room with ``?after=<id>``: the missed messages, in order, once."""

from __future__ import annotations

import asyncio

import pytest

from tests.live_client import csrf_headers, recv_event, recv_json, ws_connect

pytestmark = pytest.mark.slow


async def post_text(client, room: str, text: str) -> dict:
    """Post one message over HTTP with a session client; return its event."""
    response = await client.post(
        f"/api/rooms/{room}/messages", json={"text": text}, headers=csrf_headers(client)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_after_replays_newer_messages_between_hello_and_presence(live_server, alice, room):
    first, *missed = [await post_text(alice, room, text) for text in ("seen", "missed 1", "missed 2")]

    async with ws_connect(live_server, alice, f"/ws/rooms/{room}/?after={first['id']}") as ws:
        hello = await recv_json(ws)
        replayed = [await recv_json(ws) for _ in missed]
        presence = await recv_json(ws)

    assert hello["type"] == "hello" and hello["last_id"] == missed[-1]["id"]
    assert replayed == missed
    assert presence == {"type": "presence", "users": ["alice"]}


async def test_after_the_last_id_replays_nothing(live_server, alice, room):
    last = await post_text(alice, room, "already seen")

    async with ws_connect(live_server, alice, f"/ws/rooms/{room}/?after={last['id']}") as ws:
        assert (await recv_json(ws))["type"] == "hello"
        assert (await recv_json(ws))["type"] == "presence"


@pytest.mark.parametrize(
    "after",
    [
        "x",
        "-1",
        pytest.param(
            "%C2%B2",  # "²": str.isdigit() says yes, int() says no
            id="superscript-two",
        ),
    ],
)
async def test_unusable_after_is_ignored(live_server, alice, room, after):
    async with ws_connect(live_server, alice, f"/ws/rooms/{room}/?after={after}") as ws:
        assert (await recv_json(ws))["type"] == "hello"
        assert (await recv_json(ws))["type"] == "presence"


async def test_messages_posted_while_resuming_arrive_once_in_order(live_server, alice, bob, room):
    seen = await post_text(alice, room, "seen before the drop")

    async def keep_posting() -> list[int]:
        return [(await post_text(bob, room, f"live {i}"))["id"] for i in range(12)]

    poster = asyncio.create_task(keep_posting())
    async with ws_connect(live_server, alice, f"/ws/rooms/{room}/?after={seen['id']}") as ws:
        posted = await poster
        received = []
        while not received or received[-1] < posted[-1]:
            event = await recv_event(ws, skip=("hello", "presence", "presence_diff"))
            received.append(event["id"])

    assert received == posted
