"""How long a join or a leave on one server process takes to reach a listener on another.

    .venv/bin/python bench/presence_latency.py [--bus redis|postgres] [--samples 15]

Two server processes, as the cluster tests start them (Daphne over Redis
database 4, or uvicorn on a scratch PostgreSQL database with
``REALTIME_BUS=postgres``); a chat socket of bob on B listens to a fresh
room, then alice's socket opens on A (join: from the start of her
handshake to bob's ``presence_diff``) and, 1.2 s later, closes (leave:
from her close to bob's next ``presence_diff``). Prints median, p90, min
and max in milliseconds. Run it in another tree (``git archive``) to
measure an earlier commit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

from tests import pg_cluster  # noqa: E402
from tests.chat.test_cluster import connect, start_cluster, stop_cluster  # noqa: E402
from tests.sse_client import login  # noqa: E402

REDIS_URL = "redis://127.0.0.1:6379/4"


async def next_diff(ws) -> dict:
    """Return the next presence_diff the socket receives."""
    while True:
        event = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if event["type"] == "presence_diff":
            return event


async def measure(a, b, samples: int) -> tuple[list[float], list[float]]:
    """Return the join and leave latencies (seconds) of ``samples`` rounds."""
    joins, leaves = [], []
    async with login(b.url, "bob") as bob, login(a.url, "alice") as alice:
        for _ in range(samples):
            room = f"latency-{uuid.uuid4().hex[:8]}"
            watcher = await connect(b, bob, room)
            await asyncio.sleep(0.3)
            started = time.perf_counter()
            ws = await connect(a, alice, room)
            await next_diff(watcher)
            joins.append(time.perf_counter() - started)
            await asyncio.sleep(1.2)  # past the one-a-second spacing of a topic's diffs
            started = time.perf_counter()
            await ws.close()
            await next_diff(watcher)
            leaves.append(time.perf_counter() - started)
            await watcher.close()
    return joins, leaves


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bus", choices=("redis", "postgres"), default="redis")
    parser.add_argument("--samples", type=int, default=15)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp())
    if args.bus == "redis":
        a, b = start_cluster(tmp, REDIS_URL)
        stop = lambda: stop_cluster((a, b), REDIS_URL)  # noqa: E731
    else:
        a, b = pg_cluster.prepare(tmp, REALTIME_PRESENCE_TTL="3")
        await pg_cluster.start_all((a, b))
        stop = lambda: pg_cluster.stop_all((a, b))  # noqa: E731
    try:
        joins, leaves = await measure(a, b, args.samples)
    finally:
        stop()
    for name, values in (("join", joins), ("leave", leaves)):
        ms = sorted(v * 1000 for v in values)
        p90 = ms[max(0, round(len(ms) * 0.9) - 1)]
        print(
            f"{args.bus} {name}: n={len(ms)} median {statistics.median(ms):.0f} ms, p90 {p90:.0f}, "
            f"min {ms[0]:.0f}, max {ms[-1]:.0f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
