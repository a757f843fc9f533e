"""The Redis relay's cost per published event: CPU of the processes' side, and of Redis.

Two relay layers in one event loop stand for two server processes; each
has one member channel (a sink that counts) in one group. Senders publish
events as fast as the relay takes them, ``--concurrency`` at a time (a
burst of chat senders); every event reaches both "processes" through
Redis. Reports this process's CPU (both sides: publish, relay, hand-off)
and Redis's CPU (``INFO cpu``) per event, and events/s. Needs Redis
(``REDIS_URL``, default redis://127.0.0.1:6379/9, flushed).

    .venv/bin/python bench/relay_cost.py [--events 5000] [--concurrency 10]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from project.settings import redis_channel_layer  # noqa: E402
from realtime.relay import RedisRelayChannelLayer  # noqa: E402

URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/9")


def redis_cpu(client: redis.Redis) -> float:
    """Return Redis's CPU seconds so far."""
    info = client.info("cpu")
    return info["used_cpu_sys"] + info["used_cpu_user"]


async def run(events: int, concurrency: int) -> dict:
    """Publish ``events`` from one layer; return the figures once both layers received all."""
    # The project's own Redis options (its socket timeout above the blocking pop's).
    config = redis_channel_layer(URL)["CONFIG"]
    layers = [RedisRelayChannelLayer(**config) for _ in range(2)]
    received = [0, 0]
    done = asyncio.Event()

    def sink(index: int):
        def take(message: dict) -> bool:
            received[index] += 1
            if min(received) >= events:
                done.set()
            return True

        return take

    for index, layer in enumerate(layers):
        channel = await layer.new_channel()
        layer.attach(channel, sink(index))
        await layer.group_add("bench", channel)
    text = '{"type":"message","id":1,"text":"' + "x" * 60 + '"}'
    client = redis.Redis.from_url(URL)
    cpu, redis_before, start = time.process_time(), redis_cpu(client), time.perf_counter()
    queue = iter(range(events))

    async def sender() -> None:
        for n in queue:
            await layers[0].group_send("bench", {"type": "realtime.event", "text": text, "id": n})

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    try:
        await asyncio.wait_for(done.wait(), 30)
    except TimeoutError:
        print("received", received)
        raise
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    redis_used = redis_cpu(client) - redis_before
    for layer in layers:
        tasks = (layer._relay_task, layer._refresh_task)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await layer.close_pools()
    return {"per_s": events / seconds, "cpu_us": 1e6 * cpu / events, "redis_us": 1e6 * redis_used / events}


def main() -> None:
    """Parse the arguments, run, print one line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    redis.Redis.from_url(URL).flushdb()
    result = asyncio.run(run(args.events, args.concurrency))
    print(
        f"events/s {result['per_s']:,.0f}  process CPU {result['cpu_us']:.0f} us/event  "
        f"Redis CPU {result['redis_us']:.0f} us/event"
    )


if __name__ == "__main__":
    main()
