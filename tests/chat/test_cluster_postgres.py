"""Two server processes on PostgreSQL alone (REALTIME_BUS=postgres, no Redis) acting as one app.

Two uvicorn processes as `make serve` runs them, one database, no Redis:
the wire contract (docs/contract.md), section 9. Deadlines for "within 1 s"
are a few seconds, for a loaded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace

import httpx
import psycopg
import pytest
import websockets

from tests.conftest import LiveServer, free_port, make_live_server
from tests.faults import CuttableProxy, PrivatePostgres
from tests.resume_client import ResumingClient
from tests.sse_client import login
from tests.ticker.test_ticker_live import as_uvicorn

from .test_cluster import connect, new_room, next_of_type

pytestmark = pytest.mark.slow

POSTGRES = "postgres://postgres@127.0.0.1:5432"
DEADLINE = 3.0  # "within 1 s", with room for a loaded machine


def create_database() -> str:
    """Create a scratch database; return its name."""
    name = f"realtime_pgbus_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES} is needed for these tests and is not reachable: {exc}")
    return name


def drop_database(name: str) -> None:
    """Drop a scratch database, whoever is still connected."""
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_cluster(tmp_path, database_url: str, **env: str) -> tuple[LiveServer, LiveServer]:
    """Start two uvicorn processes on ``database_url`` with the postgres bus and no Redis."""
    prepared = make_live_server(
        tmp_path, DATABASE_URL=database_url, REALTIME_BUS="postgres", REDIS_URL="", **env
    )
    a = as_uvicorn(prepared, tmp_path, "a")
    b = replace(
        as_uvicorn(prepared, tmp_path, "b"), port=(port := free_port()), url=f"http://127.0.0.1:{port}"
    )
    a.start()
    b.start()
    return a, b


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two processes shared by this module's tests (each test uses its own room)."""
    name = create_database()
    servers = start_cluster(tmp_path_factory.mktemp("pgbus"), f"{POSTGRES}/{name}")
    yield servers
    for server in servers:
        server.stop()
    drop_database(name)


async def post(client, room: str, text: str) -> dict:
    """Post a message over HTTP; return the stored message."""
    headers = {"X-CSRFToken": client.cookies["csrftoken"]}
    response = await client.post(f"/api/rooms/{room}/messages", json={"text": text}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def test_messages_posted_on_a_reach_clients_of_b_in_order(cluster):
    a, b = cluster
    room = new_room()
    async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
        ws = await connect(b, bob, room)
        sent = [await post(alice, room, f"m{n}") for n in range(15)]
        received = [await next_of_type(ws, "message") for _ in sent]
        await ws.close()
        history_a = (await alice.get(f"/api/rooms/{room}/messages")).json()
        history_b = (await bob.get(f"/api/rooms/{room}/messages")).json()
    assert received == sent
    assert history_a == history_b == {"messages": sent}


async def test_messages_from_both_processes_reach_both_in_one_order(cluster):
    a, b = cluster
    room = new_room()
    async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
        on_a, on_b = await connect(a, alice, room), await connect(b, bob, room)
        for n in range(10):
            await asyncio.gather(post(alice, room, f"a{n}"), post(bob, room, f"b{n}"))
        seen_a = [(await next_of_type(on_a, "message"))["id"] for _ in range(20)]
        seen_b = [(await next_of_type(on_b, "message"))["id"] for _ in range(20)]
        await on_a.close()
        await on_b.close()
    assert seen_a == seen_b  # the table's order, the same for every process
    assert sorted(seen_a) == sorted(set(seen_a))


async def test_logout_on_a_closes_the_sessions_socket_on_b_within_a_second(cluster):
    a, b = cluster
    async with login(a.url, "alice") as alice:
        ws = await connect(b, alice, new_room())
        response = await alice.post("/accounts/logout/", headers={"X-CSRFToken": alice.cookies["csrftoken"]})
        logged_out = time.monotonic()
        assert response.status_code == 302
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), DEADLINE)
    assert closed.value.rcvd.code == 4401
    assert time.monotonic() - logged_out < DEADLINE


async def test_a_publish_from_another_process_reaches_both_and_a_rollback_nothing(cluster):
    a, b = cluster
    room = new_room()
    code = (
        "from django.db import transaction\nfrom chat.events import announcement\n"
        "from chat.topic import RoomTopic\nfrom realtime import publish_sync\n"
        "try:\n    with transaction.atomic():\n"
        f"        publish_sync(RoomTopic({room!r}), announcement('rolled back'))\n        raise ValueError\n"
        "except ValueError:\n    pass\n"
        f"publish_sync(RoomTopic({room!r}), announcement('committed'))\n"
    )
    async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
        on_a, on_b = await connect(a, alice, room), await connect(b, bob, room)
        await asyncio.to_thread(a.manage, "shell", "-c", code)
        for ws in (on_a, on_b):
            event = await next_of_type(ws, "announcement", timeout=DEADLINE)
            assert event == {"type": "announcement", "text": "committed"}
            await ws.close()


async def test_announce_needs_no_redis(cluster):
    a, b = cluster
    room = new_room()
    async with login(b.url, "bob") as bob:
        ws = await connect(b, bob, room)
        result = await asyncio.to_thread(a.manage, "announce", room, "to every process")
        assert result.returncode == 0, result.stderr
        assert await next_of_type(ws, "announcement", timeout=DEADLINE) == {
            "type": "announcement",
            "text": "to every process",
        }
        await ws.close()


async def test_an_event_committed_after_a_higher_id_was_read_is_still_delivered(cluster):
    a, b = cluster
    room = new_room()
    late = {"type": "announcement", "text": "late"}
    message = {"type": "realtime.event", "text": json.dumps(late), "event": "announcement"}
    async with login(b.url, "bob") as bob:
        ws = await connect(b, bob, room)
        with psycopg.connect(a.env["DATABASE_URL"]) as slow:  # a transaction that commits late
            slow.execute(
                'INSERT INTO realtime_busevent (created, "group", payload) VALUES (now(), %s, %s)',
                [f"room.{room}", json.dumps(message)],
            )
            result = await asyncio.to_thread(a.manage, "announce", room, "early")  # a higher id, committed
            assert result.returncode == 0, result.stderr
            assert await next_of_type(ws, "announcement", timeout=DEADLINE) == {
                "type": "announcement",
                "text": "early",
            }
            slow.commit()
        assert await next_of_type(ws, "announcement", timeout=DEADLINE) == late
        await ws.close()


async def test_a_process_starting_while_a_lower_id_is_uncommitted_still_delivers_it(tmp_path):
    name = create_database()
    database_url = f"{POSTGRES}/{name}"
    prepared = make_live_server(tmp_path, DATABASE_URL=database_url, REALTIME_BUS="postgres", REDIS_URL="")
    server = as_uvicorn(prepared, tmp_path, "late")
    room = new_room()
    late = {"type": "announcement", "text": "late"}
    message = {"type": "realtime.event", "text": json.dumps(late), "event": "announcement"}
    insert = 'INSERT INTO realtime_busevent (created, "group", payload) VALUES (now(), %s, %s)'
    try:
        with psycopg.connect(database_url) as slow:  # takes an id, commits after the server started
            slow.execute(insert, [f"room.{room}", json.dumps(message)])
            with psycopg.connect(database_url, autocommit=True) as other:  # a higher id, committed
                other.execute(insert, ["room.elsewhere", json.dumps(message)])
            server.start()
            async with login(server.url, "bob") as bob:
                ws = await connect(server, bob, room)
                slow.commit()
                assert await next_of_type(ws, "announcement", timeout=DEADLINE) == late
                await ws.close()
    finally:
        server.stop()
        drop_database(name)


async def history_ids(client, room: str) -> list[int]:
    """Return the ids of the room's stored messages (up to 200, oldest first), [] while it is down."""
    response = await client.get(f"/api/rooms/{room}/messages", params={"limit": 200})
    return [m["id"] for m in response.json()["messages"]] if response.status_code == 200 else []


async def keep_posting(client, room: str, stop: asyncio.Event) -> int:
    """Post a message every 50 ms until ``stop``, through an outage (503s); return how many were stored."""
    stored = 0
    headers = {"X-CSRFToken": client.cookies["csrftoken"]}
    while not stop.is_set():
        try:
            response = await client.post(f"/api/rooms/{room}/messages", json={"text": "l"}, headers=headers)
            stored += response.status_code == 201
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.05)
    return stored


def terminate_backends(name: str) -> None:
    """End every session on database ``name`` from the server's side, as a restart's shutdown does."""
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            (name,),
        )


@contextlib.contextmanager
def failing_database(fault: str) -> Iterator[tuple[str, Callable[[], Awaitable[None]]]]:
    """Yield a scratch database's URL and how to fail it for about a second, then give it back.

    ``cut``: every connection dropped mid-stream (the network, or a crash), through a proxy.
    ``terminated``: each session ended by the server ("terminating connection due to administrator
    command"), new connections refused for a second. ``restart``: a PostgreSQL server of the test's
    own restarted for real (``pg_ctl restart -m fast``).
    """
    if fault == "restart":
        server = PrivatePostgres()
        try:
            server.start()
            name = "realtime_pgbus_restart"
            server.create_database(name)
            yield server.url(name), lambda: asyncio.to_thread(server.restart)
        finally:
            server.stop()
        return
    name = create_database()
    proxy = CuttableProxy(target_port=5432)
    proxy.start()

    async def fail() -> None:
        if fault == "cut":
            await asyncio.to_thread(proxy.set_cut, True)
        else:
            await asyncio.to_thread(proxy.set_cut, True, drop=False)
            await asyncio.to_thread(terminate_backends, name)
        await asyncio.sleep(1)
        await asyncio.to_thread(proxy.set_cut, False)

    try:
        yield f"postgres://postgres@127.0.0.1:{proxy.port}/{name}", fail
    finally:
        proxy.stop()
        drop_database(name)


@pytest.mark.parametrize("fault", ["cut", "terminated", "restart"])
async def test_postgres_failing_under_load_loses_nothing_committed(tmp_path, fault):
    with failing_database(fault) as (database_url, fail):
        await _lose_nothing_committed(tmp_path, database_url, fail)


async def _lose_nothing_committed(tmp_path, database_url: str, fail: Callable[[], Awaitable[None]]) -> None:
    a, b = start_cluster(tmp_path, database_url, REALTIME_RATE_LIMIT="100000/1s")
    room = new_room()
    try:
        async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
            stop_following, stop_posting = asyncio.Event(), asyncio.Event()
            followers = [ResumingClient(server.url, room, bob.cookies, "ws") for server in (a, b)]
            following = [asyncio.create_task(f.run(stop_following)) for f in followers]
            for follower in followers:
                await asyncio.wait_for(follower.connected.wait(), 10)
            posting = asyncio.create_task(keep_posting(alice, room, stop_posting))
            await asyncio.sleep(1)

            await fail()

            async with asyncio.timeout(30):  # the pools and the bus reconnect by themselves
                before: list[int] = []
                while not before:  # the database answers again
                    before = await history_ids(alice, room)
                while len(await history_ids(alice, room)) <= len(before):  # and posts are stored again
                    await asyncio.sleep(0.2)
            stop_posting.set()
            assert await posting > 0
            expected = await history_ids(alice, room)
            try:  # every committed message reaches both processes' clients, once
                async with asyncio.timeout(30):
                    while any(f.seen != expected for f in followers):
                        await asyncio.sleep(0.1)
            except TimeoutError:
                pytest.fail(
                    f"{len(expected)} stored; "
                    + "; ".join(
                        f"follower {n}: missing {sorted(set(expected) - set(f.seen))}, "
                        f"extra {sorted(set(f.seen) - set(expected))}, in order {f.seen == sorted(f.seen)}"
                        for n, f in enumerate(followers)
                    )
                )
            stop_following.set()
            await asyncio.gather(*following)
            # Live again: the first handshake after the outage gets through (connections the
            # outage ended are replaced before use), and a new message crosses within the deadline.
            ws = await connect(b, bob, room)
            sent = await post(alice, room, "live again")
            assert await next_of_type(ws, "message", timeout=DEADLINE) == sent
            await ws.close()
    finally:
        a.stop()
        b.stop()


def test_postgres_bus_on_sqlite_refuses_to_start(tmp_path):
    server = LiveServer(url="", port=0, env={**make_env(tmp_path), "REALTIME_BUS": "postgres"})
    result = server.manage("check", check=False)
    assert result.returncode != 0
    assert "REALTIME_BUS=postgres needs DATABASE_URL on PostgreSQL" in result.stderr


def make_env(tmp_path) -> dict[str, str]:
    """Return an environment for a SQLite server in ``tmp_path`` without Redis."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "REALTIME_BUS")}
    return {**env, "DJANGO_SETTINGS_MODULE": "project.settings", "SQLITE_PATH": str(tmp_path / "db.sqlite3")}


def test_redis_bus_without_redis_url_refuses_to_start(tmp_path):
    server = LiveServer(url="", port=0, env={**make_env(tmp_path), "REALTIME_BUS": "redis"})
    result = server.manage("check", check=False)
    assert result.returncode != 0
    assert "REALTIME_BUS=redis needs REDIS_URL" in result.stderr
