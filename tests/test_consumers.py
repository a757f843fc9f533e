"""The room consumer, driven through project.asgi.application."""

from __future__ import annotations

import asyncio
import json

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from realtime import events, presence
from realtime.models import Message, Room
from tests.asgi import joined, make_user, session_cookie, ws

pytestmark = pytest.mark.django_db(transaction=True)

ROOM = "/ws/rooms/general/"


async def test_hello_then_presence_on_connect():
    alice = await make_user("alice")
    comm = ws(ROOM, cookie=await session_cookie(alice))
    assert (await comm.connect())[0]
    assert await comm.receive_json_from() == {
        "type": "hello",
        "user": {"id": alice.pk, "username": "alice"},
        "room": "general",
        "last_id": 0,
    }
    assert await comm.receive_json_from() == {"type": "presence", "users": ["alice"]}
    await comm.disconnect()


async def test_message_is_stored_then_broadcast_to_everyone_in_the_room():
    alice, bob = await make_user("alice"), await make_user("bob")
    async with joined(ROOM, user=alice) as a, joined(ROOM, user=bob) as b:
        await a.send_json_to({"type": "message", "text": "  hi bob  "})
        for comm in (a, b):
            event = await comm.receive_json_from()
            while event["type"] != "message":
                event = await comm.receive_json_from()
            assert event["text"] == "hi bob" and event["user"] == "alice" and event["room"] == "general"
        stored = await Message.objects.aget(pk=event["id"])
        assert stored.text == "hi bob"
        assert event["created"] == stored.created.isoformat()


async def test_message_ids_increase_within_a_room():
    alice = await make_user("alice")
    async with joined(ROOM, user=alice) as a:
        for n in range(5):
            await a.send_json_to({"type": "message", "text": f"m{n}"})
        ids = [(await a.receive_json_from())["id"] for _ in range(5)]
    assert ids == sorted(ids) and len(set(ids)) == 5


async def test_typing_reaches_others_but_not_the_sender():
    alice, bob = await make_user("alice"), await make_user("bob")
    async with joined(ROOM, user=alice) as a, joined(ROOM, user=bob) as b:
        await a.send_json_to({"type": "typing"})
        assert await b.receive_json_from() == {"type": "typing", "user": "alice"}
        assert await a.receive_nothing(timeout=0.2)


async def test_ping_is_answered_with_pong():
    alice = await make_user("alice")
    async with joined(ROOM, user=alice) as a:
        await a.send_json_to({"type": "ping"})
        assert await a.receive_json_from() == {"type": "pong"}


async def test_after_replays_missed_messages_in_order_before_presence():
    alice = await make_user("alice")
    async with joined(ROOM, user=alice) as a:
        for n in range(3):
            await a.send_json_to({"type": "message", "text": f"m{n}"})
        first, *rest = [await a.receive_json_from() for _ in range(3)]
    comm = ws(f"{ROOM}?after={first['id']}", cookie=await session_cookie(alice))
    await comm.connect()
    hello = await comm.receive_json_from()
    assert hello["last_id"] == rest[-1]["id"]
    assert [await comm.receive_json_from() for _ in rest] == rest
    assert (await comm.receive_json_from())["type"] == "presence"
    await comm.disconnect()


async def test_replay_spans_several_pages():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    await Message.objects.abulk_create(Message(room=room, user=alice, text=f"m{n}") for n in range(450))
    comm = ws(f"{ROOM}?after=0", cookie=await session_cookie(alice))
    await comm.connect()
    await comm.receive_json_from()
    texts = [(await comm.receive_json_from())["text"] for _ in range(450)]
    assert texts == [f"m{n}" for n in range(450)]
    assert (await comm.receive_json_from())["type"] == "presence"
    await comm.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "bad_json"),
        ("[1, 2]", "bad_json"),
        ("42", "bad_json"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"text": "no type"}', "invalid"),
        ('{"type": 7}', "invalid"),
        ('{"type": "message"}', "invalid"),
        ('{"type": "message", "text": 5}', "invalid"),
        ('{"type": "message", "text": "   "}', "invalid"),
        (json.dumps({"type": "message", "text": "x" * 2001}), "too_large"),
        (json.dumps({"type": "message", "text": "x", "pad": "y" * 70_000}), "too_large"),
    ],
)
async def test_bad_frame_gets_its_error_and_the_socket_stays_open(frame, code):
    alice = await make_user("alice")
    async with joined(ROOM, user=alice) as a:
        await a.send_to(text_data=frame)
        event = await a.receive_json_from()
        assert event["type"] == "error" and event["code"] == code and event["detail"]
        await a.send_json_to({"type": "ping"})
        assert await a.receive_json_from() == {"type": "pong"}
    assert await Message.objects.acount() == 0


async def test_binary_frame_is_unsupported():
    alice = await make_user("alice")
    async with joined(ROOM, user=alice) as a:
        await a.send_to(bytes_data=b"\x00\x01")
        assert (await a.receive_json_from())["code"] == "binary_unsupported"


async def test_text_of_exactly_the_limit_is_accepted():
    alice = await make_user("alice")
    async with joined(ROOM, user=alice) as a:
        await a.send_json_to({"type": "message", "text": "é" * 2000})
        assert (await a.receive_json_from())["type"] == "message"


@override_settings(REALTIME_RATE_LIMIT="3/10s")
async def test_flood_is_rate_limited_and_dropped():
    alice = await make_user("alice")
    async with joined(ROOM, user=alice) as a:
        for n in range(4):
            await a.send_json_to({"type": "message", "text": f"m{n}"})
        events = [await a.receive_json_from() for _ in range(4)]
    assert [e["type"] for e in events] == ["message", "message", "message", "error"]
    assert events[-1]["code"] == "rate_limited"
    assert await Message.objects.acount() == 3


@override_settings(REALTIME_MAX_CONNECTIONS_PER_USER=2)
async def test_connections_over_the_per_user_limit_are_refused():
    alice = await make_user("alice")
    async with joined(ROOM, user=alice), joined("/ws/rooms/other/", user=alice):
        extra = ws(ROOM, cookie=await session_cookie(alice))
        assert not (await extra.connect())[0]


async def test_presence_diff_reports_joins_and_leaves_but_not_second_tabs(monkeypatch):
    monkeypatch.setattr(presence, "TICK_SECONDS", 0.05)
    alice, bob = await make_user("alice"), await make_user("bob")
    async with joined(ROOM, user=alice) as a:
        async with joined(ROOM, user=bob):
            assert await a.receive_json_from() == {"type": "presence_diff", "joins": ["bob"], "leaves": []}
            async with joined(ROOM, user=bob):
                assert await a.receive_nothing(timeout=0.3)
            assert await a.receive_nothing(timeout=0.3)
        assert await a.receive_json_from() == {"type": "presence_diff", "joins": [], "leaves": ["bob"]}


async def test_presence_changes_are_coalesced(monkeypatch):
    monkeypatch.setattr(presence, "TICK_SECONDS", 0.3)
    alice = await make_user("alice")
    others = [await make_user(f"user{n}") for n in range(3)]
    async with joined(ROOM, user=alice) as a:
        comms = [ws(ROOM, cookie=await session_cookie(u)) for u in others]
        for comm in comms:
            await comm.connect()
        await asyncio.sleep(0.5)
        diffs = []
        while not await a.receive_nothing(timeout=0.4):
            diffs.append(await a.receive_json_from())
        for comm in comms:
            await comm.disconnect()
    assert sum(len(d["joins"]) for d in diffs) == 3 and len(diffs) <= 2


async def test_socket_that_falls_behind_is_closed_1013_to_resume_by_replay():
    alice = await make_user("alice")
    layer = get_channel_layer()
    async with joined(ROOM, user=alice) as a:
        (channel,) = layer.groups[events.room_group("general")]
        # All at once, so the consumer cannot drain its queue in between.
        burst = [{"type": "realtime.event", "text": f"{n}"} for n in range(layer.get_capacity(channel) * 2)]
        await asyncio.gather(*(layer.group_send(events.room_group("general"), m) for m in burst))
        codes = []
        while not codes:
            output = await a.receive_output(2)
            if output["type"] == "websocket.close":
                codes.append(output["code"])
    assert codes == [1013]
    assert layer.overflows == 1
