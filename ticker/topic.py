"""The ticker's topic and its state: the latest snapshot of prices, kept in the cache.

Prices are state, not a log: whoever reads them (``GET /api/ticker``, a new
WebSocket or SSE stream) gets the latest snapshot. Django's cache holds it:
this process's memory by default; with ``REDIS_URL``, Redis, where the one
feed of the cluster (ticker.feed) writes it and every process reads it.
"""

from __future__ import annotations

from django.core.cache import cache
from django.utils import timezone

from realtime import Opening, Topic, user_public

SYMBOLS = ["ACME", "GLOBEX", "INITECH", "UMBRELLA", "WAYNE", "STARK"]
SNAPSHOT_KEY = "ticker:snapshot"


def snapshot(seq: int, prices: dict[str, dict[str, str]]) -> dict:
    """Return the ``prices`` event of one moment (the wire contract, section 7)."""
    return {"type": "prices", "seq": seq, "prices": prices, "at": timezone.now().isoformat()}


async def latest() -> dict:
    """Return the latest snapshot; before the feed's first tick, every symbol at 100.00 (seq 0)."""
    current = await cache.aget(SNAPSHOT_KEY)
    if current is None:
        first = snapshot(0, {s: {"price": "100.00", "change": "0.00"} for s in SYMBOLS})
        await cache.aadd(SNAPSHOT_KEY, first, timeout=None)  # atomic: one first snapshot
        current = await cache.aget(SNAPSHOT_KEY)
    return current


class TickerTopic(Topic):
    """``ticker``: prices events, de-duplicated by ``seq``; no client frames but the core's ping."""

    kind = "ticker"

    async def open(self, user, after: int | None) -> Opening:
        """Hello, then the latest snapshot; live snapshots up to its seq are skipped."""
        current = await latest()
        return Opening(
            hello={"type": "hello", "user": user_public(user), "topic": "ticker"},
            floor=current["seq"],
            catch_up=[current],
        )

    def event_id(self, event: dict) -> int | None:
        """Return a prices event's seq (SSE's ``id:``)."""
        return event["seq"] if event["type"] == "prices" else None
