"""Micro-benchmark: the cost of the shared state per operation, Redis store against PostgreSQL store.

What a handshake and its end pay on a shared bus (slot take + give back),
what a message pays (a rate check), and a heartbeat, through the stores of
realtime.stores as the server calls them (one event loop, the store's own
client or pool). Two patterns:

* sequential: one call after the other (the latency of one call);
* concurrent: 50 tasks calling at once (throughput, a handshake storm).

Each cell is the best of --repeat runs (the machine may be busy). PostgreSQL
runs on a scratch database with the core's migration applied, dropped after;
Redis on database 13, its keys deleted after.
Reproduce: .venv/bin/python bench/shared_state.py [--calls 2000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import platform
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

import django  # noqa: E402

django.setup()

import psycopg  # noqa: E402
import redis  # noqa: E402
from django.conf import settings  # noqa: E402

from realtime import pg_store, stores  # noqa: E402

PG_SERVER = os.environ.get("BENCH_PG_SERVER", "postgresql://postgres@127.0.0.1:5432")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
CONCURRENCY = 50


async def timed(call: Callable[[int], Awaitable[object]], calls: int, concurrency: int) -> float:
    """Return the µs per call of ``calls`` calls, ``concurrency`` at a time."""
    started = time.perf_counter()
    if concurrency == 1:
        for n in range(calls):
            await call(n)
    else:

        async def worker(first: int) -> None:
            for n in range(first, calls, concurrency):
                await call(n)

        await asyncio.gather(*(worker(first) for first in range(concurrency)))
    return (time.perf_counter() - started) / calls * 1e6


def operations(store: stores.Store, run: str) -> dict[str, Callable[[int], Awaitable[object]]]:
    """Return the operations measured, each over keys of its own for this run."""
    process_id = f"bench-{run}"

    async def admit_release(n: int) -> None:
        user_id = 1_000_000 + n % 500
        admitted, _ = await store.slot_take(user_id=user_id, process_id=process_id, limit=10**6, ttl=30)
        assert admitted
        await store.slot_give(user_id=user_id, process_id=process_id)

    async def rate_check(n: int) -> None:
        await store.rate_hit(user_id=n % 500, key=f"bench-{run}", count=10**6, seconds=10)

    async def heartbeat(n: int) -> None:
        await store.heartbeat(process_id=f"{process_id}-{n % 4}", ttl=30, snapshot={"topics": {}})

    return {"admit + release (2 calls)": admit_release, "rate check": rate_check, "heartbeat": heartbeat}


async def measure(bus: str, calls: int, repeat: int) -> dict[tuple[str, int], float]:
    settings.REALTIME_BUS = bus
    store = stores.required()
    best: dict[tuple[str, int], float] = {}
    for attempt in range(repeat):
        for name, call in operations(store, f"{bus}-{attempt}").items():
            await call(0)  # connections opened, scripts loaded, statements prepared
            for concurrency in (1, CONCURRENCY):
                cost = await timed(call, calls, concurrency)
                best[name, concurrency] = min(cost, best.get((name, concurrency), float("inf")))
    await stores.close()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    name = f"realtime_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{PG_SERVER}/{name}"
    redis_client = redis.Redis.from_url(REDIS_URL)
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(importlib.import_module("realtime.migrations.0006_shared_state").FORWARD)
        pg_store.conninfo = lambda: url  # the scratch database, not the project's
        settings.REDIS_URL = REDIS_URL
        results = {bus: asyncio.run(measure(bus, args.calls, args.repeat)) for bus in ("redis", "postgres")}
    finally:
        for key in redis_client.scan_iter("realtime:*"):
            redis_client.delete(key)
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    print(f"# shared state per call, µs (best of {args.repeat} × {args.calls} calls; {platform.node()})")
    print("| operation | calls at once | Redis | PostgreSQL | PostgreSQL / Redis |")
    print("|---|---:|---:|---:|---:|")
    for (operation, concurrency), redis_cost in results["redis"].items():
        pg_cost = results["postgres"][operation, concurrency]
        ratio = pg_cost / redis_cost
        print(f"| {operation} | {concurrency} | {redis_cost:.0f} | {pg_cost:.0f} | {ratio:.1f}× |")


if __name__ == "__main__":
    main()
