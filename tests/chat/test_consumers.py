"""The room consumer, driven through project.asgi.application."""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from channels.layers import get_channel_layer
from django.test import override_settings

from chat import events as chat_events
from chat.models import Message, Room
from chat.topic import RoomTopic
from project.asgi import application
from realtime import events, presence, registry
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


async def test_live_messages_out_of_id_order_all_arrive():
    # With several processes each stores and broadcasts its own messages, so a room's ids
    # can arrive out of order: process B's 2 before process A's 1. Neither may be dropped.
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    first, second = [await Message.objects.acreate(room=room, user=alice, text=t) for t in ("a", "b")]
    async with joined(f"{ROOM}?after={second.pk}", user=alice) as a:
        for msg in (second, first):  # both before this socket's start: skipped
            await events.publish(RoomTopic("general"), chat_events.message(msg))
        later = [await Message.objects.acreate(room=room, user=alice, text=t) for t in ("c", "d")]
        for msg in reversed(later):
            await events.publish(RoomTopic("general"), chat_events.message(msg))
        assert [(await a.receive_json_from())["text"] for _ in later] == ["d", "c"]
        assert await a.receive_nothing(timeout=0.2)


async def test_a_message_both_replayed_and_live_is_sent_once():
    alice = await make_user("alice")
    room = await Room.objects.acreate(slug="general")
    first, second = [await Message.objects.acreate(room=room, user=alice, text=t) for t in ("a", "b")]
    comm = ws(f"{ROOM}?after={first.pk}", cookie=await session_cookie(alice))
    await comm.connect()
    assert (await comm.receive_json_from())["type"] == "hello"
    assert (await comm.receive_json_from())["text"] == "b"  # replayed
    await events.publish(
        RoomTopic("general"), chat_events.message(second)
    )  # and published live (a late broadcast)
    assert (await comm.receive_json_from())["type"] == "presence"
    assert await comm.receive_nothing(timeout=0.2)
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
    monkeypatch.setattr(registry, "TICK_SECONDS", 0.05)
    alice, bob = await make_user("alice"), await make_user("bob")
    async with joined(ROOM, user=alice) as a:
        async with joined(ROOM, user=bob):
            assert await a.receive_json_from() == {"type": "presence_diff", "joins": ["bob"], "leaves": []}
            async with joined(ROOM, user=bob):
                assert await a.receive_nothing(timeout=0.3)
            assert await a.receive_nothing(timeout=0.3)
        assert await a.receive_json_from() == {"type": "presence_diff", "joins": [], "leaves": ["bob"]}


async def test_presence_changes_are_coalesced(monkeypatch):
    monkeypatch.setattr(registry, "TICK_SECONDS", 0.3)
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


class SlowReader:
    """Wraps an ASGI app: its sends wait while ``writable`` is clear, as uvicorn's do on a full transport."""

    def __init__(self, app) -> None:
        self.app = app
        self.writable = asyncio.Event()
        self.writable.set()

    async def __call__(self, scope, receive, send) -> None:
        async def gated(message: dict) -> None:
            await self.writable.wait()
            await send(message)

        await self.app(scope, receive, gated)


async def outputs_until_close(comm) -> tuple[list[dict], int]:
    """Return the events a socket receives until it is closed, and the close code."""
    received = []
    while True:
        output = await comm.receive_output(2)
        if output["type"] == "websocket.close":
            return received, output["code"]
        received.append(json.loads(output["text"]))


@contextlib.asynccontextmanager
async def stalled_socket():
    """Yield alice and her joined socket whose client has stopped reading (sends wait), and its gate."""
    alice = await make_user("alice")
    slow = SlowReader(application)
    async with joined(ROOM, user=alice, app=slow) as comm:
        slow.writable.clear()  # the client stops reading; the server's transport fills up
        yield alice, comm, slow.writable


async def announce(count: int) -> None:
    """Publish announcements "0" .. str(count - 1) to the room."""
    for n in range(count):
        await events.publish(RoomTopic("general"), chat_events.announcement(str(n)))


async def test_socket_that_falls_behind_is_closed_1013_to_resume_by_replay():
    layer = get_channel_layer()
    async with stalled_socket() as (_, a, writable):
        (channel,) = layer.groups[RoomTopic("general").group]
        capacity = layer.get_capacity(channel)
        await announce(capacity + 10)
        assert layer.overflows == 1  # noticed while the reader is stuck, not after
        writable.set()  # reading again: what fitted arrives in order, then the close
        received, code = await outputs_until_close(a)
    assert code == 1013
    assert [e["text"] for e in received] == [str(n) for n in range(len(received))]
    # One send was on its way when the reader stopped, the queue held the rest.
    assert len(received) == capacity + 1


async def test_events_behind_a_blocked_send_keep_their_order():
    async with stalled_socket() as (_, a, writable):
        await announce(5)
        await a.send_json_to({"type": "ping"})  # answered behind the events already on their way
        assert await a.receive_nothing(timeout=0.1)
        writable.set()
        received = [await a.receive_json_from() for _ in range(6)]
        # Delivery is inline again once the queue drained.
        await events.publish(RoomTopic("general"), chat_events.announcement("later"))
        assert await a.receive_json_from() == chat_events.announcement("later")
    assert received == [chat_events.announcement(str(n)) for n in range(5)] + [events.pong()]


async def test_a_control_message_waits_its_turn_behind_queued_events():
    async with stalled_socket() as (alice, a, writable):
        await announce(3)
        await events.notify(events.user_group(alice.pk), events.CLOSE, code=4401)
        writable.set()
        received, code = await outputs_until_close(a)
    assert (received, code) == ([chat_events.announcement(str(n)) for n in range(3)], 4401)


async def test_events_reach_sockets_without_a_task_per_delivery(monkeypatch):
    """Inline delivery: publishing to a room starts no task, whatever its size."""
    alice, bob, carol = [await make_user(name) for name in ("alice", "bob", "carol")]
    async with joined(ROOM, user=alice) as a, joined(ROOM, user=bob) as b, joined(ROOM, user=carol) as c:

        def no_tasks(*args, **kwargs):
            raise AssertionError("a task was started for a delivery")

        with monkeypatch.context() as patch:
            patch.setattr(asyncio.get_running_loop(), "create_task", no_tasks)
            await events.publish(RoomTopic("general"), chat_events.announcement("hi"))
        for comm in (a, b, c):
            assert await comm.receive_json_from() == chat_events.announcement("hi")


async def test_a_burst_of_joiners_shares_one_presence_encoding_that_lists_each(monkeypatch):
    monkeypatch.setattr(registry, "TICK_SECONDS", 0.3)
    # Joins soon after an encoding wait for the next one: a fixed 1.5 s, whatever this machine's speed.
    monkeypatch.setattr(presence, "BATCH_COST_FACTOR", 1e9)
    monkeypatch.setattr(presence, "BATCH_MAX_WAIT", 1.5)
    encoded = []
    encode = events.encode
    monkeypatch.setattr(events, "encode", lambda event: encoded.append(event["type"]) or encode(event))
    names = ["alice", "bob", "carol", "dave"]
    comms = [ws(ROOM, cookie=await session_cookie(await make_user(name))) for name in names]
    for comm in comms:
        assert (await comm.connect())[0]
        assert (await comm.receive_json_from())["type"] == "hello"
    views = []
    for name, comm in zip(names, comms, strict=True):
        view = set((await comm.receive_json_from(timeout=5))["users"])
        assert name in view  # a joiner is always in the list it gets
        views.append(view)
    assert encoded.count("presence") < len(names)  # shared by the burst, not one per joiner
    # Diffs then bring every listener to the same, exact list.
    for view, comm in zip(views, comms, strict=True):
        while view != set(names):
            diff = await comm.receive_json_from(timeout=3)
            assert diff["type"] == "presence_diff"
            view |= set(diff["joins"])
            view -= set(diff["leaves"])
    for comm in comms:
        await comm.disconnect()
