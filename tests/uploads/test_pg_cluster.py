"""The upload quota across two server processes on PostgreSQL alone (REALTIME_BUS=postgres, no REDIS_URL)."""

from __future__ import annotations

import asyncio

import pytest

from tests import pg_cluster
from tests.sse_client import login
from tests.uploads.test_upload_quota import creation_headers

pytestmark = pytest.mark.slow


async def test_concurrent_creations_on_two_processes_stop_exactly_at_the_quota(tmp_path):
    servers = pg_cluster.prepare(tmp_path, DJANGO_MEDIA_ROOT=str(tmp_path / "media"))
    await pg_cluster.start_all(servers)
    a, b = servers
    try:
        async with login(a.url, "alice") as on_a, login(b.url, "alice") as on_b:

            async def create(client, n: int) -> int:
                headers = {**creation_headers(n), "X-CSRFToken": client.cookies["csrftoken"]}
                return (await client.post("/api/uploads/", headers=headers)).status_code

            statuses = await asyncio.gather(*(create(on_a if n % 2 else on_b, n) for n in range(15)))
        assert sorted(statuses) == [201] * 5 + [429] * 10  # UPLOADS_MAX_ACTIVE_PER_USER
    finally:
        await asyncio.to_thread(pg_cluster.stop_all, servers)
