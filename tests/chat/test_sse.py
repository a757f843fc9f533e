"""Server-Sent Events through a real Daphne (the wire contract (docs/contract.md), section 4)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import httpx
import pytest

from tests.conftest import running_server
from tests.sse_client import login, sse

pytestmark = pytest.mark.slow


def new_room() -> str:
    """Return a fresh room slug, so tests on the shared server do not meet."""
    return f"sse-{uuid.uuid4().hex[:12]}"


async def post(client: httpx.AsyncClient, room: str, text: str) -> dict:
    """Post a message over HTTP with the session's CSRF token; return the event."""
    response = await client.post(
        f"/api/rooms/{room}/messages",
        json={"text": text},
        headers={"X-CSRFToken": client.cookies["csrftoken"]},
    )
    assert response.status_code == 201, response.text
    return response.json()


async def test_stream_sends_hello_presence_then_live_messages_with_ids(live_server):
    room = new_room()
    async with login(live_server.url, "alice") as alice, sse(alice, f"/sse/rooms/{room}/") as stream:
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        hello = await stream.next_event()
        assert (hello.event, hello.data["user"]["username"], hello.data["room"], hello.id) == (
            "hello",
            "alice",
            room,
            None,
        )
        presence = await stream.next_event()
        assert (presence.event, presence.data) == ("presence", {"type": "presence", "users": ["alice"]})
        sent = await post(alice, room, "over sse")
        message = await stream.next_event()
        assert (message.event, message.id, message.data) == ("message", str(sent["id"]), sent)


async def test_last_event_id_and_after_replay_what_was_missed(live_server):
    room = new_room()
    async with login(live_server.url, "alice") as alice:
        sent = [await post(alice, room, f"m{n}") for n in range(4)]
        for headers, query in (({"Last-Event-ID": str(sent[0]["id"])}, ""), ({}, f"?after={sent[0]['id']}")):
            async with sse(alice, f"/sse/rooms/{room}/{query}", **headers) as stream:
                assert (await stream.next_event()).data["last_id"] == sent[-1]["id"]
                replayed = [await stream.next_event() for _ in sent[1:]]
                assert [e.data for e in replayed] == sent[1:]
                assert [e.id for e in replayed] == [str(m["id"]) for m in sent[1:]]
                assert (await stream.next_event()).event == "presence"


async def test_stream_without_identity_is_refused(live_server):
    async with httpx.AsyncClient(base_url=live_server.url) as anonymous:
        response = await anonymous.get(f"/sse/rooms/{new_room()}/")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


async def test_stream_with_bearer_token_works(live_server):
    room = new_room()
    token = live_server.create_token("bob")
    async with (
        httpx.AsyncClient(base_url=live_server.url) as client,
        sse(client, f"/sse/rooms/{room}/", Authorization=f"Bearer {token}") as stream,
    ):
        assert (await stream.next_event()).data["user"]["username"] == "bob"


async def test_sse_listeners_count_in_presence_and_see_websocket_events(live_server):
    room = new_room()
    async with (
        login(live_server.url, "alice") as alice,
        login(live_server.url, "bob") as bob,
        sse(bob, f"/sse/rooms/{room}/") as stream,
    ):
        await stream.next_event()
        await stream.next_event()
        presence = (await alice.get(f"/api/rooms/{room}/presence")).json()
        assert presence == {"users": ["bob"]}
        async with sse(alice, f"/sse/rooms/{room}/") as alice_stream:
            await alice_stream.next_event()
            assert (await alice_stream.next_event()).data["users"] == ["alice", "bob"]
            diff = await stream.next_event()
            assert diff.data == {"type": "presence_diff", "joins": ["alice"], "leaves": []}


async def test_logout_ends_that_sessions_stream(live_server):
    room = new_room()
    async with login(live_server.url, "alice") as alice, sse(alice, f"/sse/rooms/{room}/") as stream:
        await stream.next_event()
        await stream.next_event()
        response = await alice.post("/accounts/logout/", headers={"X-CSRFToken": alice.cookies["csrftoken"]})
        assert response.status_code == 302
        with pytest.raises(EOFError):
            await stream.next_event(timeout=2)


async def test_keep_alive_comments_arrive_on_a_quiet_stream(tmp_path):
    with running_server(tmp_path, REALTIME_SSE_KEEPALIVE="0.3") as server:
        async with login(server.url, "alice") as alice, sse(alice, f"/sse/rooms/{new_room()}/") as stream:
            await stream.next_event()
            await stream.next_event()
            comments = [await stream.next(timeout=2) for _ in range(2)]
        assert [c.event for c in comments] == [":", ":"]


async def test_streams_over_the_per_user_limit_are_refused(tmp_path):
    with running_server(tmp_path, REALTIME_MAX_CONNECTIONS_PER_USER="3") as server:
        async with login(server.url, "alice") as alice, contextlib.AsyncExitStack() as streams:
            # Keep every reader: a dropped one is garbage-collected, closing its stream.
            readers = [
                await streams.enter_async_context(sse(alice, f"/sse/rooms/{new_room()}/")) for _ in range(3)
            ]
            assert [(await r.next_event()).event for r in readers] == ["hello"] * 3
            refused = await alice.get(f"/sse/rooms/{new_room()}/")
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"


async def test_two_hundred_concurrent_streams_on_one_process(tmp_path):
    with running_server(tmp_path, REALTIME_MAX_CONNECTIONS_PER_USER="1000") as server:
        await two_hundred_streams(server)


async def two_hundred_streams(live_server) -> None:
    """Open 200 streams at once, then check one post reaches every one of them."""
    room = new_room()
    limits = httpx.Limits(max_connections=250, max_keepalive_connections=0)
    async with (
        login(live_server.url, "alice") as alice,
        httpx.AsyncClient(
            base_url=live_server.url,
            cookies=alice.cookies,
            limits=limits,
            timeout=httpx.Timeout(30, read=None),
        ) as many,
        asyncio.TaskGroup() as group,
    ):
        ready = asyncio.Event()
        opened: list[int] = []
        received: list[dict] = []

        async def listen() -> None:
            async with sse(many, f"/sse/rooms/{room}/") as stream:
                await stream.next_event(timeout=30)
                await stream.next_event(timeout=30)
                opened.append(1)
                if len(opened) == 200:
                    ready.set()
                received.append((await stream.next_event(timeout=30)).data)

        for _ in range(200):
            group.create_task(listen())
        await asyncio.wait_for(ready.wait(), 60)
        sent = await post(alice, room, "to all 200")
    assert len(received) == 200 and all(r == sent for r in received)
