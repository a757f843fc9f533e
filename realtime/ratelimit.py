"""Per-user rate limits kept in Django's cache, keyed by what is limited (a topic's group).

WebSocket frames and HTTP posts count together; with ``REDIS_URL`` the cache
is Redis, so every server process counts against the same window.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from dataclasses import dataclass

from django.conf import settings

from .caching import cache_call
from .services import REDIS_ERRORS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rate:
    """At most ``count`` hits within ``seconds``."""

    count: int
    seconds: float


@functools.lru_cache(maxsize=16)  # called per message with the same setting: parse it once
def parse_rate(text: str) -> Rate:
    """Parse a rate such as ``"20/10s"`` (units s, m, h)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d*)\s*([smh])\s*", text)
    if not match:
        raise ValueError(f"Bad rate {text!r}: expected '<count>/<n><s|m|h>', e.g. '20/10s'.")
    count, amount, unit = match.groups()
    return Rate(int(count), int(amount or 1) * {"s": 1, "m": 60, "h": 3600}[unit])


async def allow(*, user_id: int, key: str, rate: str | None = None) -> bool:
    """Record one hit by ``user_id`` on ``key``; return False when over ``rate`` (REALTIME_RATE_LIMIT).

    A sliding log of timestamps, so the limit holds across window edges.
    Concurrent processes may race on the read-modify-write and let a message
    or two more through; the limit is a flood guard, not an accounting.
    """
    limit = parse_rate(rate or settings.REALTIME_RATE_LIMIT)
    cache_key = f"realtime:rate:{user_id}:{key}"
    now = time.time()
    try:
        stamps = [t for t in (await cache_call("get", cache_key) or []) if t > now - limit.seconds]
        if len(stamps) >= limit.count:
            return False
        stamps.append(now)
        await cache_call("set", cache_key, stamps, timeout=int(limit.seconds) + 1)
    except REDIS_ERRORS as exc:
        # Fail open: losing the flood guard for a moment beats refusing every message.
        logger.warning("rate-limit cache unavailable, message allowed: %s", exc)
    return True
