"""Several server processes acting as one app over Redis (real Daphne processes)."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import uuid
from dataclasses import replace

import pytest
import redis
import websockets

from tests.conftest import LiveServer, free_port, make_live_server
from tests.sse_client import login

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/12"
DOOMED_REDIS_URL = "redis://127.0.0.1:6379/11"
SLOW_TICK_REDIS_URL = "redis://127.0.0.1:6379/5"


def start_cluster(tmp_path, redis_url: str, **env: str) -> tuple[LiveServer, LiveServer]:
    """Start two Daphne processes sharing one database and one Redis database (flushed)."""
    try:
        redis.Redis.from_url(redis_url).flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {redis_url} is needed for the cluster tests and is not reachable: {exc}")
    a = make_live_server(tmp_path, REDIS_URL=redis_url, **{"REALTIME_PRESENCE_TTL": "3", **env})
    port = free_port()
    b = replace(
        a, url=f"http://127.0.0.1:{port}", port=port, log_path=tmp_path / "daphne-b.log", process=None
    )
    a.start()
    b.start()
    return a, b


def stop_cluster(servers: tuple[LiveServer, LiveServer], redis_url: str) -> None:
    """Stop both processes and empty their Redis database."""
    for server in servers:
        server.stop()
    redis.Redis.from_url(redis_url).flushdb()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two processes shared by the tests of this module (each test uses its own room)."""
    servers = start_cluster(tmp_path_factory.mktemp("cluster"), REDIS_URL)
    yield servers
    stop_cluster(servers, REDIS_URL)


@pytest.fixture
def doomed_cluster(tmp_path):
    """Two processes of its own, for a test that kills one."""
    servers = start_cluster(tmp_path, DOOMED_REDIS_URL)
    yield servers
    stop_cluster(servers, DOOMED_REDIS_URL)


@pytest.fixture
def slow_tick_cluster(tmp_path):
    """Two processes whose heartbeat ticks every 30 s: between ticks, presence crosses as deltas only."""
    servers = start_cluster(
        tmp_path, SLOW_TICK_REDIS_URL, REALTIME_HEARTBEAT_SECONDS="30", REALTIME_PRESENCE_TTL="90"
    )
    yield servers
    stop_cluster(servers, SLOW_TICK_REDIS_URL)


def new_room() -> str:
    """Return a fresh room slug."""
    return f"cluster-{uuid.uuid4().hex[:10]}"


def cookie_header(client) -> str:
    """Return the Cookie header of a logged-in httpx client."""
    return "; ".join(f"{k}={v}" for k, v in client.cookies.items())


async def connect(server: LiveServer, client, room: str):
    """Open a room socket on ``server`` with ``client``'s session; read past hello and presence."""
    ws = await websockets.connect(
        f"{server.ws_url}/ws/rooms/{room}/",
        additional_headers={"Cookie": cookie_header(client), "Origin": server.url},
    )
    assert json.loads(await ws.recv())["type"] == "hello"
    assert json.loads(await ws.recv())["type"] == "presence"
    return ws


async def next_of_type(ws, kind: str, timeout: float = 5) -> dict:
    """Return the next event of type ``kind``, skipping others."""
    while (event := json.loads(await asyncio.wait_for(ws.recv(), timeout)))["type"] != kind:
        pass
    return event


async def eventually(check, timeout: float = 10) -> None:
    """Wait until the async ``check()`` returns True."""
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.1)


async def presence_on(server: LiveServer, client, room: str) -> list[str]:
    """Return the room's presence as ``server`` reports it."""
    return (await client.get(f"{server.url}/api/rooms/{room}/presence")).json()["users"]


async def test_messages_posted_on_a_reach_clients_of_b_in_order(cluster):
    a, b = cluster
    room = new_room()
    async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
        ws = await connect(b, bob, room)
        sent = []
        for n in range(15):
            response = await alice.post(
                f"/api/rooms/{room}/messages",
                json={"text": f"m{n}"},
                headers={"X-CSRFToken": alice.cookies["csrftoken"]},
            )
            sent.append(response.json())
        received = [await next_of_type(ws, "message") for _ in sent]
        await ws.close()
        history_a = (await alice.get(f"/api/rooms/{room}/messages")).json()
        history_b = (await bob.get(f"/api/rooms/{room}/messages")).json()
    assert received == sent
    assert history_a == history_b == {"messages": sent}


async def test_logout_on_a_closes_the_sessions_socket_on_b(cluster):
    a, b = cluster
    async with login(a.url, "alice") as alice:
        ws = await connect(b, alice, new_room())
        response = await alice.post("/accounts/logout/", headers={"X-CSRFToken": alice.cookies["csrftoken"]})
        assert response.status_code == 302
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 1.5)
    assert closed.value.rcvd.code == 4401


async def test_presence_on_a_lists_a_user_connected_to_b(cluster):
    a, b = cluster
    room = new_room()
    async with login(b.url, "bob") as bob, login(a.url, "alice") as alice:
        ws = await connect(b, bob, room)

        async def bob_listed_on_a() -> bool:
            return await presence_on(a, alice, room) == ["bob"]

        await eventually(bob_listed_on_a)
        rooms = (await alice.get(f"{a.url}/api/rooms")).json()["rooms"]
        assert {"slug": room, "name": room.replace("-", " ").title(), "online": 1} in rooms
        await ws.close()

        async def nobody_on_a() -> bool:
            return await presence_on(a, alice, room) == []

        await eventually(nobody_on_a)


async def test_a_join_and_a_leave_on_a_reach_b_between_heartbeat_ticks(slow_tick_cluster):
    a, b = slow_tick_cluster
    room = new_room()
    async with login(b.url, "bob") as bob, login(a.url, "alice") as alice:
        watcher = await connect(b, bob, room)
        ws = await connect(a, alice, room)
        # Well before B's next tick (30 s): the join came on the bus, not by A's snapshot.
        diff = await next_of_type(watcher, "presence_diff", timeout=10)
        assert diff == {"type": "presence_diff", "joins": ["alice"], "leaves": []}
        await ws.close()
        diff = await next_of_type(watcher, "presence_diff", timeout=10)
        assert diff == {"type": "presence_diff", "joins": [], "leaves": ["alice"]}
        await watcher.close()


async def test_presence_forgets_the_users_of_a_killed_process(doomed_cluster):
    a, b = doomed_cluster
    room = new_room()
    async with login(b.url, "bob") as bob, login(a.url, "alice") as alice:
        watcher = await connect(a, alice, room)
        ws = await connect(b, bob, room)
        assert await next_of_type(watcher, "presence_diff") == {
            "type": "presence_diff",
            "joins": ["bob"],
            "leaves": [],
        }
        b.process.send_signal(signal.SIGKILL)
        b.process.wait()
        # No goodbye from B: its entries expire (REALTIME_PRESENCE_TTL=3) and A notices.
        diff = await next_of_type(watcher, "presence_diff", timeout=10)
        assert diff == {"type": "presence_diff", "joins": [], "leaves": ["bob"]}
        assert await presence_on(a, alice, room) == ["alice"]
        await watcher.close()
        await ws.close()


async def test_presence_converges_under_churn_across_processes(cluster):
    a, b = cluster
    room = new_room()
    names = ["alice", "bob", "admin"]
    async with login(a.url, "alice") as alice, login(a.url, "bob") as bob, login(a.url, "admin") as admin:
        clients = dict(zip(names, (alice, bob, admin), strict=True))
        rng = random.Random(7)
        sockets: list[tuple[str, object]] = []
        for _ in range(40):
            if sockets and rng.random() < 0.45:
                _, ws = sockets.pop(rng.randrange(len(sockets)))
                await ws.close()
            else:
                name = rng.choice(names)
                sockets.append((name, await connect(rng.choice((a, b)), clients[name], room)))
        truth = sorted({name for name, _ in sockets})

        async def both_agree() -> bool:
            return await presence_on(a, alice, room) == truth and await presence_on(b, alice, room) == truth

        await eventually(both_agree)
        for _, ws in sockets:
            await ws.close()


async def test_announce_from_a_third_process_reaches_every_process(cluster):
    a, b = cluster
    room = new_room()
    async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
        on_a, on_b = await connect(a, alice, room), await connect(b, bob, room)
        result = a.manage("announce", room, "maintenance at noon")
        assert result.returncode == 0, result.stderr
        for ws in (on_a, on_b):
            assert await next_of_type(ws, "announcement") == {
                "type": "announcement",
                "text": "maintenance at noon",
            }
            await ws.close()
