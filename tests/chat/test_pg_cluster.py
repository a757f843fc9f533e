"""Chat's limits across two server processes on PostgreSQL alone (REALTIME_BUS=postgres, no REDIS_URL).

As over Redis (tests/realtime/test_limits.py): the message rate limit and
the room-creation limit hold exactly across processes. The room-creation
limit is checked from the realtime DB thread, so the store must never
wait on that thread.
"""

from __future__ import annotations

import asyncio
import uuid

import psycopg
import pytest

from tests import pg_cluster
from tests.sse_client import login

pytestmark = pytest.mark.slow

ROOMS_PER_HOUR = 4


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two processes on one scratch database, shared by the tests below."""
    servers = pg_cluster.prepare(
        tmp_path_factory.mktemp("chat-pg"), CHAT_ROOMS_PER_USER_PER_HOUR=str(ROOMS_PER_HOUR)
    )
    asyncio.run(pg_cluster.start_all(servers))
    yield servers
    pg_cluster.stop_all(servers)


def csrf(client) -> dict[str, str]:
    return {"X-CSRFToken": client.cookies["csrftoken"]}


async def post(client, room: str) -> int:
    """Post one message to ``room``; return the status code."""
    response = await client.post(f"/api/rooms/{room}/messages", json={"text": "hi"}, headers=csrf(client))
    return response.status_code


async def test_concurrent_posts_to_two_processes_never_pass_the_limit(cluster):
    a, b = cluster
    room = f"limits-{uuid.uuid4().hex[:8]}"
    async with login(a.url, "alice") as on_a, login(b.url, "alice") as on_b:
        statuses = []
        for _ in range(3):  # three waves of 8 concurrent posts to each process
            statuses += await asyncio.gather(*(post(c, room) for c in [on_a] * 8 + [on_b] * 8))
        history = (await on_a.get(f"/api/rooms/{room}/messages")).json()["messages"]
    assert sorted(statuses) == [201] * 20 + [429] * 28  # REALTIME_RATE_LIMIT: 20/10s
    assert len(history) == 20


async def test_rooms_created_at_once_on_two_processes_never_pass_the_limit(cluster):
    a, b = cluster
    rooms = [f"new-{uuid.uuid4().hex[:8]}" for _ in range(12)]
    async with login(a.url, "bob") as on_a, login(b.url, "bob") as on_b:
        statuses = await asyncio.gather(
            *(post(client, room) for client, room in zip([on_a, on_b] * 6, rooms, strict=True))
        )
        created = [room for room, status in zip(rooms, statuses, strict=True) if status == 201]
        assert len(created) == ROOMS_PER_HOUR, statuses
        assert sorted(set(statuses)) == [201, 429]
    # A refused room was never created.
    with psycopg.connect(a.env["DATABASE_URL"]) as conn:
        rows = conn.execute("SELECT slug FROM realtime_room WHERE slug = ANY (%s)", (rooms,)).fetchall()
    assert sorted(slug for (slug,) in rows) == sorted(created)
