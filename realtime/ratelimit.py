"""Per-user rate limits, keyed by what is limited (a topic's group).

WebSocket frames and HTTP posts count together. Each check records the hit
in the same atomic step, so concurrent posts, in one process or many, never
pass the limit:

* on a shared bus, a sliding log per (user, key) in the store of
  realtime.stores, shared by every server process and checked and recorded
  in one atomic step, one round trip per check (Redis: a sorted set and a
  Lua script; PostgreSQL: a row of timestamps and a function that locks it);
* on the in-process bus one process serves everything and :class:`LocalLog`
  keeps the sliding logs in its memory: no eviction can reset a window (as
  Django's ``LocMemCache`` does past 300 keys), and expired windows are
  dropped, so memory follows recent activity.
"""

from __future__ import annotations

import functools
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass

from django.conf import settings

from . import metrics, stores
from .process import process

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
    refused hit is not recorded. While the store is down every hit is allowed
    (logged): losing the flood guard for a moment beats refusing every message.
    """
    limit = parse_rate(rate or settings.REALTIME_RATE_LIMIT)
    store = stores.current()
    if store is None:
        allowed = process.rate_log.hit(f"{user_id}:{key}", limit.count, limit.seconds)
    else:
        try:
            allowed = await store.rate_hit(user_id=user_id, key=key, count=limit.count, seconds=limit.seconds)
        except store.errors as exc:
            logger.warning("rate-limit store unavailable, message allowed: %s", exc)
            return True
    if not allowed:
        metrics.rate_limited(key)
    return allowed


@dataclass(eq=False)
class _Log:
    stamps: deque[float]
    seconds: float


class LocalLog:
    """Sliding logs in this process's memory: at most ``count`` hits per key within ``seconds``.

    Check and record happen under one lock, so concurrent callers (tasks or
    threads) cannot all pass one check. A log is never evicted while it can
    still refuse a hit; logs whose last hit is older than their window are
    dropped by a sweep every :attr:`SWEEP_SECONDS` (linear in the logs kept),
    so memory is bounded by the keys hit within a window and a sweep.
    """

    SWEEP_SECONDS = 10.0

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._lock = threading.Lock()
        self._next_sweep = float("-inf")

    def __len__(self) -> int:
        return len(self._logs)

    def hit(self, key: str, count: int, seconds: float) -> bool:
        """Record a hit on ``key`` unless ``count`` were within ``seconds``; return whether recorded."""
        with self._lock:
            now = self._clock()
            if now >= self._next_sweep:
                self._sweep(now)
            log = self._logs.get(key)
            if log is None:
                log = self._logs[key] = _Log(deque(), seconds)
            log.seconds = seconds
            stamps, cutoff = log.stamps, now - seconds
            while stamps and stamps[0] <= cutoff:
                stamps.popleft()
            if len(stamps) >= count:
                return False
            stamps.append(now)
            return True

    def clear(self) -> None:
        """Forget every log."""
        with self._lock:
            self._logs.clear()

    def _sweep(self, now: float) -> None:
        self._logs = {
            key: log for key, log in self._logs.items() if log.stamps and log.stamps[-1] > now - log.seconds
        }
        self._next_sweep = now + self.SWEEP_SECONDS


# The rate log of this process (on the in-process bus).
process.declare("rate_log", LocalLog)
