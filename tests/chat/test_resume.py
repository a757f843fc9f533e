"""No message lost or repeated across drops, churn and server restarts (real Daphne)."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
import websockets

from tests.conftest import make_live_server, running_server
from tests.resume_client import ResumingClient
from tests.sse_client import login, sse

pytestmark = pytest.mark.slow


def new_room() -> str:
    """Return a fresh room slug."""
    return f"resume-{uuid.uuid4().hex[:12]}"


async def stored_ids(client: httpx.AsyncClient, room: str) -> list[int]:
    """Return every message id of the room, paging through the HTTP API."""
    ids, after = [], 0
    while True:
        page = (await client.get(f"/api/rooms/{room}/messages?after={after}&limit=200")).json()["messages"]
        ids += [m["id"] for m in page]
        if len(page) < 200:
            return ids
        after = page[-1]["id"]


async def send_messages(client: httpx.AsyncClient, room: str, count: int, tag: str) -> None:
    """Post ``count`` messages over HTTP, pacing under the rate limit."""
    for n in range(count):
        response = await client.post(
            f"/api/rooms/{room}/messages",
            json={"text": f"{tag}-{n}"},
            headers={"X-CSRFToken": client.cookies["csrftoken"]},
        )
        assert response.status_code == 201, response.text
        await asyncio.sleep(0.02)


@pytest.fixture
def churn_server(tmp_path):
    """A server of its own whose rate limit leaves room for a fast test."""
    server = make_live_server(tmp_path, REALTIME_RATE_LIMIT="1000/1s")
    for name in ("carol", "dave", "erin"):
        server.create_user(name)
    server.start()
    yield server
    server.stop()


async def test_clients_under_churn_see_every_message_exactly_once_in_order(churn_server):
    room = new_room()
    senders = ("alice", "bob", "carol")
    async with login(churn_server.url, "dave") as dave, login(churn_server.url, "erin") as erin:
        followers = [
            ResumingClient(churn_server.url, room, dave.cookies, "ws"),
            ResumingClient(churn_server.url, room, dave.cookies, "ws"),
            ResumingClient(churn_server.url, room, erin.cookies, "sse"),
            ResumingClient(churn_server.url, room, erin.cookies, "sse"),
        ]
        stop = asyncio.Event()
        running = [asyncio.create_task(f.run(stop, churn=0.4)) for f in followers]
        await asyncio.wait_for(asyncio.gather(*(f.connected.wait() for f in followers)), 20)
        async with login(churn_server.url, senders[0]) as a, login(churn_server.url, senders[1]) as b:
            async with login(churn_server.url, senders[2]) as c:
                await asyncio.gather(
                    *(send_messages(s, room, 60, name) for s, name in zip((a, b, c), senders, strict=True))
                )
            expected = await stored_ids(a, room)
        await asyncio.wait_for(_until(lambda: all(f.seen[-1:] == expected[-1:] for f in followers)), 30)
        stop.set()
        await asyncio.gather(*running)
    assert len(expected) == 180
    for follower in followers:
        assert follower.seen == expected, f"{follower.transport}: missing or repeated messages"


async def test_server_restart_closes_with_1012_and_clients_resume_without_loss(tmp_path):
    room = new_room()
    with running_server(tmp_path) as server:
        async with login(server.url, "alice") as alice, login(server.url, "bob") as bob:
            followers = [ResumingClient(server.url, room, bob.cookies, t) for t in ("ws", "sse")]
            stop = asyncio.Event()
            running = [asyncio.create_task(f.run(stop)) for f in followers]
            await asyncio.wait_for(asyncio.gather(*(f.connected.wait() for f in followers)), 20)
            await send_messages(alice, room, 5, "before")

            await asyncio.to_thread(server.stop)  # SIGTERM
            await asyncio.wait_for(_until(lambda: followers[0].close_codes), 5)
            assert followers[0].close_codes == [1012]
            await asyncio.to_thread(server.start)
            await send_messages(alice, room, 5, "after")

            expected = await stored_ids(alice, room)
            await asyncio.wait_for(_until(lambda: all(f.seen[-1:] == expected[-1:] for f in followers)), 30)
            stop.set()
            await asyncio.gather(*running)
        for follower in followers:
            assert follower.seen == expected


async def test_sigterm_ends_sse_streams_cleanly(tmp_path):
    with running_server(tmp_path) as server:
        async with login(server.url, "alice") as alice, sse(alice, f"/sse/rooms/{new_room()}/") as stream:
            await stream.next_event()
            await stream.next_event()
            server.process.terminate()
            with pytest.raises(EOFError):  # the body ended; no protocol error
                await stream.next_event(timeout=5)


async def test_sigterm_closes_websockets_with_1012(tmp_path):
    with running_server(tmp_path) as server:
        async with login(server.url, "alice") as alice:
            cookie = "; ".join(f"{k}={v}" for k, v in alice.cookies.items())
            url = f"{server.ws_url}/ws/rooms/{new_room()}/"
            async with websockets.connect(
                url, additional_headers={"Cookie": cookie, "Origin": server.url}
            ) as ws:
                assert json.loads(await ws.recv())["type"] == "hello"
                server.process.terminate()
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    while True:
                        await asyncio.wait_for(ws.recv(), 5)
        assert closed.value.rcvd.code == 1012


async def _until(predicate, interval: float = 0.05) -> None:
    """Wait until ``predicate()`` holds."""
    while not predicate():
        await asyncio.sleep(interval)
