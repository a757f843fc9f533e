"""Per-user rate limits, keyed by what is limited (a topic's group).

WebSocket frames and HTTP posts count together. Each check records the hit
in the same atomic step (realtime.limits): with ``REDIS_URL`` one Lua script
on a sorted set shared by every server process, one round trip per check;
without it an in-process sliding log that no cache eviction can reset.
Concurrent posts, in one process or many, never pass the limit.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass

from django.conf import settings

from . import limits, metrics
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

    A sliding log of timestamps, so the limit holds across window edges. A
    refused hit is not recorded. While Redis is down every hit is allowed
    (logged): losing the flood guard for a moment beats refusing every message.
    """
    limit = parse_rate(rate or settings.REALTIME_RATE_LIMIT)
    if not limits.shared():
        allowed = limits.local_log.hit(f"{user_id}:{key}", limit.count, limit.seconds)
    else:
        try:
            allowed = await limits.rate_hit(
                user_id=user_id, key=key, count=limit.count, seconds=limit.seconds
            )
        except REDIS_ERRORS as exc:
            logger.warning("rate-limit store unavailable, message allowed: %s", exc)
            return True
    if not allowed:
        metrics.rate_limited(key)
    return allowed
