"""Faults through the chat: Redis restarted or missing, PostgreSQL briefly unreachable (real processes)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid

import httpx
import psycopg
import pytest
from websockets.exceptions import ConnectionClosed

from tests.conftest import ROOT, free_port, make_live_server
from tests.faults import CuttableProxy, PrivateRedis
from tests.live_client import joined, recv_event, recv_json, send_json, ws_connect
from tests.resume_client import ResumingClient
from tests.sse_client import login

pytestmark = pytest.mark.slow

POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def new_room() -> str:
    """Return a fresh room slug."""
    return f"fault-{uuid.uuid4().hex[:10]}"


async def post(client: httpx.AsyncClient, room: str, text: str) -> httpx.Response:
    """Post a message over HTTP with the session's CSRF token."""
    return await client.post(
        f"/api/rooms/{room}/messages",
        json={"text": text},
        headers={"X-CSRFToken": client.cookies["csrftoken"]},
    )


async def test_redis_restart_keeps_http_serving_and_realtime_recovers_without_loss(tmp_path):
    private_redis = PrivateRedis(tmp_path)
    private_redis.start()
    server = make_live_server(tmp_path, REDIS_URL=private_redis.url)
    server.start()
    room = new_room()
    try:
        async with login(server.url, "alice") as alice, login(server.url, "bob") as bob:
            follower = ResumingClient(server.url, room, bob.cookies, "ws")
            stop = asyncio.Event()
            following = asyncio.create_task(follower.run(stop))
            await asyncio.wait_for(follower.connected.wait(), 10)
            assert (await post(alice, room, "before")).status_code == 201

            private_redis.stop()
            during = await post(alice, room, "during the outage")
            assert during.status_code == 201, "messages are stored even while the layer is down"
            assert (await alice.get(f"/api/rooms/{room}/messages")).status_code == 200
            assert (await alice.get("/healthz")).status_code == 200

            private_redis.start()
            assert (await post(alice, room, "after")).status_code == 201
            expected = [m["id"] for m in (await alice.get(f"/api/rooms/{room}/messages")).json()["messages"]]
            async with asyncio.timeout(30):
                while follower.seen != expected:
                    await asyncio.sleep(0.1)
            stop.set()
            await following
        assert "channel layer unavailable" in server.log_path.read_text()
    finally:
        server.stop()
        private_redis.stop()


@pytest.fixture
def postgres_database():
    """A fresh PostgreSQL database of this test's own; dropped afterwards."""
    name = f"realtime_fault_{uuid.uuid4().hex[:8]}"
    try:
        admin = psycopg.connect(POSTGRES, autocommit=True)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL at {POSTGRES} is needed for this test and is not reachable: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield name
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_postgres_outage_answers_503_json_and_closes_sockets_1011_then_recovers(
    tmp_path, postgres_database
):
    proxy = CuttableProxy(target_port=5432)
    proxy.start()
    server = make_live_server(
        tmp_path, DATABASE_URL=f"postgres://postgres@127.0.0.1:{proxy.port}/{postgres_database}"
    )
    server.start()
    room = new_room()
    try:
        async with login(server.url, "alice") as alice, ws_connect(server, alice, f"/ws/rooms/{room}/") as ws:
            await joined(ws)
            assert (await post(alice, room, "before")).status_code == 201
            assert (await recv_event(ws))["text"] == "before"

            await asyncio.to_thread(proxy.set_cut, True)
            for path in (f"/api/rooms/{room}/messages", "/api/me"):
                response = await alice.get(path)
                assert response.status_code == 503, (path, response.status_code, response.text[:200])
                assert response.json()["error"] == "unavailable"
            assert (await post(alice, room, "during")).status_code == 503
            # A frame whose handler needs the database: an error event the contract names, then 1011.
            await send_json(ws, {"type": "message", "text": "during, on the socket"})
            assert (await recv_event(ws, timeout=15))["code"] == "unavailable"
            with pytest.raises(ConnectionClosed) as closed:
                await recv_json(ws, timeout=5)
            assert closed.value.rcvd.code == 1011

            await asyncio.to_thread(proxy.set_cut, False)
            async with asyncio.timeout(15):
                while (response := await alice.get(f"/api/rooms/{room}/messages")).status_code != 200:
                    await asyncio.sleep(0.2)
            assert [m["text"] for m in response.json()["messages"]] == ["before"]
            assert (await post(alice, room, "after")).status_code == 201
    finally:
        server.stop()
        proxy.stop()


def test_announce_without_reachable_redis_is_a_clear_error_not_a_hang():
    env = {
        **os.environ,
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "DJANGO_SETTINGS_MODULE": "project.settings",
    }
    announce = subprocess.run(
        [sys.executable, "manage.py", "announce", "lobby", "hi"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert announce.returncode != 0 and "not reachable" in announce.stderr
