"""Two server processes on PostgreSQL alone (REALTIME_BUS=postgres, no REDIS_URL), on the echo topic.

The core's limits and presence across real uvicorn processes, as over
Redis (test_limits.py): the per-user connection cap exact under concurrent
handshakes, presence agreeing across processes, and a SIGKILLed process's
slots and presence fading from the other. Events do not cross processes
here: only what the store shares is under test.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import psycopg
import pytest

from tests import pg_cluster
from tests.live_client import hello_or_refused
from tests.sse_client import login

pytestmark = pytest.mark.slow

ECHO_APP = "tests.realtime.echo_asgi:application"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two processes on one scratch database (REALTIME_PRESENCE_TTL=3), shared by the tests below."""
    tmp_path = tmp_path_factory.mktemp("pg-cluster")
    servers = pg_cluster.prepare(tmp_path, app=ECHO_APP, REALTIME_PRESENCE_TTL="3")
    asyncio.run(pg_cluster.start_all(servers))
    yield servers
    pg_cluster.stop_all(servers)


def new_topic() -> str:
    return f"pg-{uuid.uuid4().hex[:8]}"


class Watcher:
    """One echo socket: who it was told is online, kept up to date from presence events."""

    def __init__(self, socket) -> None:
        self.socket = socket
        self.online: set[str] = set()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for text in self.socket:
            event = json.loads(text)
            if event["type"] == "presence":
                self.online = set(event["users"])
            elif event["type"] == "presence_diff":
                self.online = (self.online | set(event["joins"])) - set(event["leaves"])

    async def until(self, online: set[str], timeout: float = 10) -> float:
        """Wait until this socket lists exactly ``online``; return how long it took."""
        started = time.monotonic()
        async with asyncio.timeout(timeout):
            while self.online != online:
                assert not self.task.done(), f"socket closed ({self.socket.close_code})"
                await asyncio.sleep(0.05)
        return time.monotonic() - started

    async def close(self) -> None:
        await self.socket.close()
        await asyncio.gather(self.task, return_exceptions=True)


async def handshake(server, client, topic: str):
    """Try a echo socket on ``server``; return it once hello arrived, or None when refused."""
    return await hello_or_refused(server, client, f"/ws/echo/{topic}/")


def slots_held(server) -> int:
    """Return the connection slots the processes hold in the store."""
    with psycopg.connect(server.env["DATABASE_URL"]) as conn:
        return conn.execute("SELECT coalesce(sum(connections), 0) FROM realtime_slot").fetchone()[0]


async def test_simultaneous_handshakes_on_two_processes_admit_exactly_the_limit(cluster):
    a, b = cluster
    topic = new_topic()
    async with login(a.url, "bob") as on_a, login(b.url, "bob") as on_b:
        for _ in range(2):  # and again once every slot came back
            tries = [handshake(server, client, topic) for server, client in [(a, on_a), (b, on_b)] * 15]
            sockets = [ws for ws in await asyncio.gather(*tries) if ws is not None]
            assert len(sockets) == 20  # REALTIME_MAX_CONNECTIONS_PER_USER
            assert slots_held(a) == 20
            await asyncio.gather(*(ws.close() for ws in sockets))
            async with asyncio.timeout(10):  # releases are asynchronous
                while slots_held(a):
                    await asyncio.sleep(0.05)


async def test_a_user_joining_on_one_process_is_seen_on_the_other_within_a_couple_of_ticks(cluster):
    a, b = cluster
    topic = new_topic()
    async with login(a.url, "alice") as alice, login(b.url, "bob") as bob:
        on_a = Watcher(await handshake(a, alice, topic))
        await on_a.until({"alice"})
        on_b = Watcher(await handshake(b, bob, topic))
        waited = await on_a.until({"alice", "bob"}, timeout=5)
        await on_b.until({"alice", "bob"}, timeout=5)
        assert waited < 3, f"bob reached A's presence after {waited:.1f} s (ticks of 1 s)"
        await on_b.close()
        await on_a.until({"alice"}, timeout=5)
        await on_a.close()


async def test_joins_and_leaves_cross_processes_as_deltas_between_heartbeat_ticks(tmp_path):
    # Ticks 30 s apart: a change seen on the other process within 10 s came as a delta on the bus.
    a, b = pg_cluster.prepare(
        tmp_path, app=ECHO_APP, REALTIME_HEARTBEAT_SECONDS="30", REALTIME_PRESENCE_TTL="90"
    )
    await pg_cluster.start_all((a, b))
    topic = new_topic()
    try:
        async with login(a.url, "alice") as alice, login(b.url, "bob") as bob, login(b.url, "admin") as admin:
            on_b = Watcher(await handshake(b, bob, topic))
            await on_b.until({"bob"})
            on_a = Watcher(await handshake(a, alice, topic))
            await on_b.until({"alice", "bob"})
            await on_a.until({"alice", "bob"})
            admin_on_b = await handshake(b, admin, topic)
            await on_a.until({"admin", "alice", "bob"})
            await admin_on_b.close()
            await on_a.until({"alice", "bob"})
            await on_a.close()
            await on_b.until({"bob"})
            await on_b.close()
    finally:
        pg_cluster.stop_all((a, b))


async def test_a_killed_processs_slots_and_presence_fade_from_the_other(tmp_path):
    a, b = pg_cluster.prepare(
        tmp_path, app=ECHO_APP, REALTIME_PRESENCE_TTL="2", REALTIME_MAX_CONNECTIONS_PER_USER="3"
    )
    await pg_cluster.start_all((a, b))
    topic = new_topic()
    try:
        async with (
            login(a.url, "alice") as alice_a,
            login(b.url, "alice") as alice_b,
            login(a.url, "bob") as bob,
        ):
            held = [await handshake(b, alice_b, topic) for _ in range(3)]
            assert all(held)
            assert await handshake(a, alice_a, topic) is None, "B holds every slot of alice"
            watcher = Watcher(await handshake(a, bob, topic))
            await watcher.until({"alice", "bob"}, timeout=5)

            b.process.kill()  # SIGKILL: nothing given back
            await asyncio.to_thread(b.process.wait, 20)
            faded = await watcher.until({"bob"}, timeout=10)  # B's entry expires after 2 s
            assert faded < 5, f"B's presence lasted {faded:.1f} s after it died"
            ws = await handshake(a, alice_a, topic)
            assert ws is not None, "B's slots came back with its presence"
            await ws.close()
            await watcher.close()
    finally:
        pg_cluster.stop_all((a, b))


async def test_tokens_issued_at_once_on_two_processes_stop_exactly_at_the_cap(cluster):
    # Counted in the database under the user's row lock, as on every bus.
    a, b = cluster
    async with login(a.url, "alice") as on_a, login(b.url, "alice") as on_b:

        async def issue(client) -> int:
            headers = {"X-CSRFToken": client.cookies["csrftoken"]}
            return (await client.post("/api/tokens", headers=headers)).status_code

        statuses = await asyncio.gather(*(issue(client) for client in [on_a, on_b] * 15))
    assert sorted(statuses) == [201] * 20 + [429] * 10  # REALTIME_MAX_TOKENS_PER_USER
