"""The Redis channel layer as configured: a consumer may stay idle longer than redis-py's timeouts."""

from __future__ import annotations

import asyncio

import pytest
import redis
from channels_redis.core import RedisChannelLayer

from project.settings import redis_channel_layer

REDIS_URL = "redis://127.0.0.1:6379/10"


@pytest.fixture
def layer():
    """A Redis channel layer configured as the project does, on a scratch database."""
    try:
        redis.Redis.from_url(REDIS_URL).flushdb()
    except redis.ConnectionError as exc:
        pytest.fail(f"Redis at {REDIS_URL} is needed and is not reachable: {exc}")
    yield RedisChannelLayer(**redis_channel_layer(REDIS_URL)["CONFIG"])
    redis.Redis.from_url(REDIS_URL).flushdb()


async def test_receive_survives_an_idle_wait_longer_than_the_blocking_pop(layer):
    channel = await layer.new_channel()
    waiting = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(layer.brpop_timeout + 2)  # idle past BZPOPMIN's 5 s, redis-py 8's default timeout
    assert not waiting.done(), f"receive failed while idle: {waiting.exception() if waiting.done() else ''}"
    await layer.send(channel, {"type": "hello"})
    assert (await asyncio.wait_for(waiting, 5)) == {"type": "hello"}
    await layer.flush()
