"""The price feed: a random walk, one tick every TICKER_INTERVAL seconds, stored then published."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from django.core.cache import cache

from realtime import publish

from . import conf
from .topic import SNAPSHOT_KEY, TickerTopic, latest, snapshot

CENT = Decimal("0.01")
STEP = 0.01  # the largest move per tick, as a fraction of the price
CLAIM_SECONDS = 60  # how long a seq's claim lives: far longer than a feed takes to take over


def step(previous: dict) -> dict:
    """Return the next snapshot: each price moves by up to STEP of itself, never below a cent."""
    prices = {}
    for symbol, quote in previous["prices"].items():
        old = Decimal(quote["price"])
        new = max(CENT, (old * Decimal(1 + random.uniform(-STEP, STEP))).quantize(CENT))
        prices[symbol] = {"price": str(new), "change": str(new - old)}
    return snapshot(previous["seq"] + 1, prices)


async def run() -> None:
    """Run the feed (an exclusive background job: one process of the cluster at a time)."""
    current = await latest()  # a process taking over goes on from the last seq
    while True:
        await asyncio.sleep(conf.interval())
        current = step(current)
        # A leader that lost its lock runs on until it notices; the first feed to claim a
        # seq (an atomic add) publishes it, the other goes on from the latest snapshot.
        if not await cache.aadd(f"{SNAPSHOT_KEY}:seq:{current['seq']}", 1, timeout=CLAIM_SECONDS):
            current = await latest()
            continue
        # Stored first: a client that connects now reads it, and skips it when it arrives live.
        await cache.aset(SNAPSHOT_KEY, current, timeout=None)
        await publish(TickerTopic(), current)
