"""The unfinished-upload quota under concurrency: count and creation are one step."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace

import pytest
import redis

from realtime.models import ApiToken
from tests.asgi import http, make_user
from tests.conftest import free_port, make_live_server
from tests.sse_client import login
from uploads import conf
from uploads.models import Upload

REDIS_URL = "redis://127.0.0.1:6379/9"
TUS = {"Tus-Resumable": "1.0.0"}


@pytest.fixture(autouse=True)
def upload_dirs(settings, tmp_path):
    """Keep the test's media and partial files in its own temporary directory."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.UPLOADS_TEMP_DIR = tmp_path / "partial"


def creation_headers(n: int) -> dict[str, str]:
    """Return the headers of a tus creation of a 3-byte file in the room general."""
    meta = {"filename": f"f{n}.txt", "room": "general"}
    encoded = ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in meta.items())
    return {**TUS, "Upload-Length": "3", "Upload-Metadata": encoded}


@pytest.mark.django_db(transaction=True)
async def test_concurrent_creations_stop_exactly_at_the_quota(settings):
    assert conf.max_active_per_user() == 5
    alice, bob = await make_user("alice"), await make_user("bob")
    _, raw = await ApiToken.aissue(alice)
    async with http(authorization=f"Bearer {raw}") as client:
        responses = await asyncio.gather(
            *(client.post("/api/uploads/", headers=creation_headers(n)) for n in range(15))
        )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 5 + [429] * 10
    assert {r.json()["error"] for r in responses if r.status_code == 429} == {"too_many_uploads"}
    assert await Upload.objects.filter(user=alice).acount() == 5
    # Another user's quota is untouched by alice's.
    _, raw = await ApiToken.aissue(bob)
    async with http(authorization=f"Bearer {raw}") as client:
        assert (await client.post("/api/uploads/", headers=creation_headers(0))).status_code == 201


@pytest.mark.slow
async def test_concurrent_creations_on_two_processes_stop_exactly_at_the_quota(tmp_path):
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed and is not reachable: {exc}")
    # One database (SQLite file, or PostgreSQL under DATABASE_URL) for two server processes.
    a = make_live_server(tmp_path, REDIS_URL=REDIS_URL, DJANGO_MEDIA_ROOT=str(tmp_path / "media"))
    port = free_port()
    b = replace(a, url=f"http://127.0.0.1:{port}", port=port, log_path=tmp_path / "b.log", process=None)
    await asyncio.gather(asyncio.to_thread(a.start), asyncio.to_thread(b.start))
    try:
        async with login(a.url, "alice") as on_a, login(b.url, "alice") as on_b:

            async def create(client, n: int) -> int:
                headers = {**creation_headers(n), "X-CSRFToken": client.cookies["csrftoken"]}
                return (await client.post("/api/uploads/", headers=headers)).status_code

            statuses = await asyncio.gather(*(create(on_a if n % 2 else on_b, n) for n in range(15)))
        assert sorted(statuses) == [201] * 5 + [429] * 10
    finally:
        for server in (a, b):
            server.stop()
        redis.Redis.from_url(REDIS_URL).flushdb()
