"""``manage.py announce`` delivered by a server on Redis (without Redis: test_bus_default.py)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import redis

from tests.conftest import make_live_server
from tests.live_client import joined, login, recv_event, ws_connect

pytestmark = pytest.mark.slow

REDIS_URL = "redis://127.0.0.1:6379/14"


def flush_redis() -> None:
    """Empty the Redis database these tests use (channel layer, presence, rate limits)."""
    redis.Redis.from_url(REDIS_URL).flushdb()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """Start a second Daphne whose channel layer and cache live in Redis db 14."""
    try:
        flush_redis()
    except redis.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL}")
    server = make_live_server(tmp_path_factory.mktemp("redis"), REDIS_URL=REDIS_URL)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        flush_redis()


async def test_announce_reaches_sockets_of_a_server_on_redis(redis_server, room):
    async with (
        login(redis_server, "alice") as alice,
        ws_connect(redis_server, alice, f"/ws/rooms/{room}/") as ws,
    ):
        await joined(ws)
        result = await asyncio.to_thread(redis_server.manage, "announce", room, "hello all")

        assert result.returncode == 0
        assert await recv_event(ws) == {"type": "announcement", "text": "hello all"}


async def test_healthz_names_the_redis_channel_layer(redis_server):
    async with httpx.AsyncClient(base_url=redis_server.url) as client:
        response = await client.get("/healthz")

    assert response.json()["channel_layer"] == "realtime.relay.RedisRelayChannelLayer"
