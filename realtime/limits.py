"""Limits that hold across processes: each check-and-record is one atomic step.

With ``REDIS_URL`` every check is a Lua script that Redis runs atomically,
one round trip, so concurrent requests in one process or many can never
all pass the same check:

* :func:`rate_hit`: a sliding log per (user, key) in a sorted set
  (realtime.ratelimit);
* :func:`slot_take` / :func:`slot_give`: the per-user connection cap, a hash
  of process id -> connections per user, counting only processes alive in
  the registry (realtime.presence);
* :func:`heartbeat` / :func:`others`: the registry of live processes, a
  sorted set of process id -> expiry updated with ``ZADD`` (no
  read-modify-write), and each process's presence snapshot.

Times come from Redis (``TIME``), so processes on hosts whose clocks
disagree still share one window. A process that dies stops renewing its
registry entry: once it expires (``REALTIME_PRESENCE_TTL``) its slots stop
counting and are dropped by the next check of each user.

Without ``REDIS_URL`` one process serves everything and :class:`LocalLog`
keeps the sliding logs in its memory: no eviction can reset a window (as
Django's ``LocMemCache`` does past 300 keys), and expired windows are
dropped, so memory follows recent activity.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
import time
import uuid
import weakref
from collections import deque
from dataclasses import dataclass

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript

PROCESS_ID = uuid.uuid4().hex
REGISTRY_KEY = "realtime:procs"
SNAPSHOT_PREFIX = "realtime:presence:proc:"
# Redis connections per process and event loop: a connect storm waits for one
# (POOL_TIMEOUT) instead of failing, as the channel layer does (realtime.relay).
MAX_CONNECTIONS = 50
POOL_TIMEOUT = 5.0
SOCKET_TIMEOUT = 2.0  # fail fast while Redis is down: every caller degrades gracefully

# KEYS: the log. ARGV: window (µs), limit, a unique member. Returns 1 (recorded) or 0 (over).
_RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], now, ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1)
return 1
"""

# KEYS: the user's slots (hash pid -> count), the registry. ARGV: pid, limit, ttl (s).
# Returns {admitted, registered anew}.
_SLOT_TAKE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local added = redis.call('ZADD', KEYS[2], now + tonumber(ARGV[3]), ARGV[1])
local slots = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #slots, 2 do
  local pid = slots[i]
  local alive = pid == ARGV[1]
  if not alive then
    local expires = redis.call('ZSCORE', KEYS[2], pid)
    alive = expires and tonumber(expires) > now
  end
  if alive then
    total = total + tonumber(slots[i + 1])
  else
    redis.call('HDEL', KEYS[1], pid)
  end
end
if total >= tonumber(ARGV[2]) then
  return {0, added}
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return {1, added}
"""

# KEYS: the user's slots. ARGV: pid.
_SLOT_GIVE = """
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
"""

# KEYS: the registry, this process's snapshot. ARGV: pid, ttl (s), snapshot. Returns 1 if registered anew.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return added
"""

# KEYS: the registry. ARGV: pid, snapshot key prefix. Returns pid, snapshot, pid, snapshot...
# of the other live processes.
_OTHERS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local found = {}
for _, pid in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')) do
  if pid ~= ARGV[1] then
    local snapshot = redis.call('GET', ARGV[2] .. pid)
    if snapshot then
      found[#found + 1] = pid
      found[#found + 1] = snapshot
    end
  end
end
return found
"""


def shared() -> bool:
    """Return whether limits and presence are shared through Redis (``REDIS_URL``)."""
    return bool(settings.REDIS_URL)


@dataclass(eq=False)
class _Client:
    """One event loop's Redis client and its scripts."""

    url: str
    redis: Redis
    rate: AsyncScript
    slot_take: AsyncScript
    slot_give: AsyncScript
    heartbeat: AsyncScript
    others: AsyncScript


# redis.asyncio's connections belong to the loop that opened them: one client per loop, kept.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Client] = weakref.WeakKeyDictionary()


def client() -> _Client:
    """Return this event loop's client for ``REDIS_URL``."""
    loop = asyncio.get_running_loop()
    found = _clients.get(loop)
    url = settings.REDIS_URL
    if found is None or found.url != url:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
        )
        redis = Redis(connection_pool=pool)
        scripts = (_RATE, _SLOT_TAKE, _SLOT_GIVE, _HEARTBEAT, _OTHERS)
        found = _clients[loop] = _Client(url, redis, *(redis.register_script(s) for s in scripts))
    return found


async def close() -> None:
    """Close this event loop's client (tests; a server keeps its client for its life)."""
    found = _clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.redis.aclose()
        await found.redis.connection_pool.disconnect()


# -- rate limits -------------------------------------------------------------

_members = itertools.count()


def rate_key(user_id: int, key: str) -> str:
    """Return the Redis key of a user's sliding log on ``key``."""
    return f"realtime:rate:{user_id}:{key}"


async def rate_hit(*, user_id: int, key: str, count: int, seconds: float) -> bool:
    """Record one hit unless ``count`` were recorded within ``seconds``; return whether recorded.

    One round trip. Raises REDIS_ERRORS while Redis is down.
    """
    member = f"{PROCESS_ID}:{next(_members)}"
    window = round(seconds * 1_000_000)
    return bool(await client().rate(keys=[rate_key(user_id, key)], args=[window, count, member]))


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


local_log = LocalLog()


# -- connection slots ----------------------------------------------------------


def slots_key(user_id: int) -> str:
    """Return the Redis key of a user's connection slots (process id -> connections)."""
    return f"realtime:slots:{user_id}"


def _ttl() -> int:
    return max(1, math.ceil(settings.REALTIME_PRESENCE_TTL))


async def slot_take(*, user_id: int, limit: int) -> tuple[bool, bool]:
    """Take a connection slot of ``user_id`` for this process unless all processes hold ``limit``.

    Also renews this process's registry entry. Returns (admitted, whether
    this process was registered anew: Redis lost its entry, so its other
    slots may be missing too). One round trip; raises REDIS_ERRORS.
    """
    admitted, added = await client().slot_take(
        keys=[slots_key(user_id), REGISTRY_KEY], args=[PROCESS_ID, limit, _ttl()]
    )
    return bool(admitted), bool(added)


async def slot_give(*, user_id: int) -> None:
    """Give back a slot taken by :func:`slot_take`. One round trip; raises REDIS_ERRORS."""
    await client().slot_give(keys=[slots_key(user_id)], args=[PROCESS_ID])


async def slots_set(counts: dict[int, int]) -> None:
    """Set this process's slot counts of the given users (after Redis lost them). One round trip."""
    pipe = client().redis.pipeline(transaction=False)
    for user_id, count in counts.items():
        if count > 0:
            pipe.hset(slots_key(user_id), PROCESS_ID, count)
        else:
            pipe.hdel(slots_key(user_id), PROCESS_ID)
    await pipe.execute()


# -- the registry of processes and their presence snapshots ----------------------


async def heartbeat(snapshot: dict, *, process_id: str = PROCESS_ID) -> bool:
    """Register this process until the TTL from now and store its snapshot; return whether registered anew.

    ``ZADD`` on the shared registry (and pruning of expired entries by
    score): processes that register at the same moment cannot drop each
    other. One round trip; raises REDIS_ERRORS.
    """
    added = await client().heartbeat(
        keys=[REGISTRY_KEY, SNAPSHOT_PREFIX + process_id],
        args=[process_id, _ttl(), json.dumps(snapshot, separators=(",", ":"))],
    )
    return bool(added)


async def others(*, process_id: str = PROCESS_ID) -> dict[str, bytes]:
    """Return the snapshots (JSON) of the other live processes by process id. One round trip."""
    found = await client().others(keys=[REGISTRY_KEY], args=[process_id, SNAPSHOT_PREFIX])
    return {found[i].decode(): found[i + 1] for i in range(0, len(found), 2)}
