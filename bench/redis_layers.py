"""Compare Redis layers on room fan-out: channels_redis's two, and the relay the project uses.

One process, one group of N member channels (as N sockets of one server
process in one room), S group_send calls; reports deliveries/s and the
latency from group_send to each receive. Needs Redis (REDIS_URL, default
redis://127.0.0.1:6379/8, flushed).

    .venv/bin/python bench/redis_layers.py [--members 100 1000] [--messages 200]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from channels_redis.core import RedisChannelLayer  # noqa: E402
from channels_redis.pubsub import RedisPubSubChannelLayer  # noqa: E402

from project.settings import redis_channel_layer  # noqa: E402
from realtime.relay import RedisRelayChannelLayer  # noqa: E402


async def run(layer, members: int, messages: int) -> dict:
    """Fan ``messages`` group messages out to ``members`` channels; return the figures."""
    channels = [await layer.new_channel() for _ in range(members)]
    for channel in channels:
        await layer.group_add("bench", channel)
    latencies: list[float] = []
    received = 0

    async def consume(channel: str) -> None:
        nonlocal received
        for _ in range(messages):
            message = await layer.receive(channel)
            latencies.append(time.perf_counter() - message["sent"])
            received += 1

    consumers = [asyncio.create_task(consume(c)) for c in channels]
    await asyncio.sleep(0.5)  # let every receive start (pub/sub subscribes lazily)
    start = time.perf_counter()
    for n in range(messages):
        await layer.group_send("bench", {"type": "bench.message", "n": n, "sent": time.perf_counter()})
    try:
        await asyncio.wait_for(asyncio.gather(*consumers), timeout=120)
    except TimeoutError:
        for task in consumers:
            task.cancel()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {
        "delivered": received,
        "expected": members * messages,
        "per_s": received / elapsed,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--messages", type=int, default=200)
    args = parser.parse_args()
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/8")
    config = redis_channel_layer(url)["CONFIG"]
    layers = {
        "RedisChannelLayer": lambda: RedisChannelLayer(**config, group_expiry=3600),
        "RedisPubSubChannelLayer": lambda: RedisPubSubChannelLayer(hosts=config["hosts"]),
        "RedisRelayChannelLayer (REDIS_URL's)": lambda: RedisRelayChannelLayer(**config, group_expiry=3600),
    }
    print("| layer | members | messages | delivered | deliveries/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for members in args.members:
        for name, make in layers.items():
            redis.Redis.from_url(url).flushdb()
            layer = make()
            result = await run(layer, members, args.messages)
            await layer.flush()
            print(
                f"| {name} | {members} | {args.messages} | {result['delivered']}/{result['expected']} "
                f"| {result['per_s']:,.0f} | {result['p50_ms']:.1f} | {result['p99_ms']:.1f} |"
            )
    print(f"\nReproduce: .venv/bin/python bench/redis_layers.py --members {' '.join(map(str, args.members))}")


if __name__ == "__main__":
    asyncio.run(main())
