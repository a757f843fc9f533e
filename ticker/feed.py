"""The price feed: a random walk, one tick every TICKER_INTERVAL seconds, stored then published."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal

from realtime import publish

from . import conf
from .topic import TickerTopic, advance, latest, snapshot

CENT = Decimal("0.01")
STEP = 0.01  # the largest move per tick, as a fraction of the price


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
    current = await latest()  # a process taking over, or started again, goes on from the stored seq
    while True:
        await asyncio.sleep(conf.interval())
        following = step(current)
        # Shielded: SIGTERM cancelling the feed between storing a tick and publishing it would leave
        # the clients of the other processes a gap.
        if await asyncio.shield(store_and_publish(current, following)):
            current = following
        else:
            # A leader that lost its lock runs on until it notices: the other feed stored this seq
            # (or a later one) first, so this one goes on from the stored snapshot.
            current = await latest()


async def store_and_publish(current: dict, following: dict) -> bool:
    """Store ``following`` if ``current`` is still the latest, then publish it; return whether it was."""
    if not await advance(current, following):
        return False
    # Stored first: a client that connects now reads it, and skips it when it arrives live.
    await publish(TickerTopic(), following)
    return True
