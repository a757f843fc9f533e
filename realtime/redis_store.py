"""The core's Redis store (``REALTIME_BUS=redis``): one client per event loop, and the shared state.

Over Redis the limits, presence and exclusive jobs are shared by every
server process (realtime.stores picks this store by the bus). Each
check-and-record is a :class:`Script` that Redis runs atomically, one
round trip. Times come from Redis (``TIME``), so processes on hosts whose
clocks disagree still share one window.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import math
import uuid
import weakref
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from redis.asyncio import BlockingConnectionPool, Redis
from redis.commands.core import AsyncScript
from redis.exceptions import LockError

from .process import process
from .services import REDIS_ERRORS

# Redis connections per process and event loop: a connect storm waits for one
# (POOL_TIMEOUT) instead of failing, as the channel layer does (realtime.relay).
MAX_CONNECTIONS = 50
POOL_TIMEOUT = 5.0
SOCKET_TIMEOUT = 2.0  # fail fast while Redis is down: every caller degrades gracefully


@dataclass(eq=False)
class Client:
    """One event loop's Redis client, and the scripts registered on it so far."""

    url: str
    redis: Redis
    scripts: dict[Script, AsyncScript] = field(default_factory=dict)


# redis.asyncio's connections belong to the loop that opened them: one client per loop, kept.
process.declare("redis_clients", weakref.WeakKeyDictionary)


def client() -> Client:
    """Return this event loop's client for ``REDIS_URL``."""
    loop = asyncio.get_running_loop()
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = process.redis_clients
    found = clients.get(loop)
    url = settings.REDIS_URL
    if found is None or found.url != url:
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=SOCKET_TIMEOUT,
        )
        found = clients[loop] = Client(url, Redis(connection_pool=pool))
    return found


async def close() -> None:
    """Close this event loop's client (tests; a server keeps its client for its life)."""
    found = process.redis_clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.redis.aclose()
        await found.redis.connection_pool.disconnect()


class Script:
    """A Lua script Redis runs atomically, declared once by the module that uses it.

    Called as ``await script(keys=[...], args=[...])`` on this event loop's
    client: one round trip (``EVALSHA``, loading the script the first time).
    """

    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source

    def __call__(self, *, keys: Sequence[Any], args: Sequence[Any]) -> Awaitable[Any]:
        """Run the script on this event loop's client; raises REDIS_ERRORS while Redis is down."""
        found = client()
        runner = found.scripts.get(self)
        if runner is None:  # first use on this client: hashing only, no round trip
            runner = found.scripts[self] = found.redis.register_script(self.source)
        return runner(keys=keys, args=args)


# -- the shared state of realtime.stores, in Redis --------------------------------------------

REGISTRY_KEY = "realtime:procs"  # sorted set: process id -> expiry
SNAPSHOT_PREFIX = "realtime:presence:proc:"

# KEYS: the registry, this process's snapshot. ARGV: pid, ttl (s), snapshot. Returns 1 if registered anew.
_HEARTBEAT = Script("""
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local added = redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('SET', KEYS[2], ARGV[3], 'EX', ARGV[2])
return added
""")

# KEYS: the registry. ARGV: pid, snapshot key prefix. Returns pid, snapshot, pid, snapshot...
# of the other live processes.
_OTHERS = Script("""
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
""")

# KEYS: the user's slots (hash pid -> count), the registry. ARGV: pid, limit, ttl (s).
# Returns {admitted, registered anew}.
_SLOT_TAKE = Script("""
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
""")

# KEYS: the user's slots. ARGV: pid.
_SLOT_GIVE = Script("""
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
""")

# KEYS: the log. ARGV: window (µs), limit, a unique member. Returns 1 (recorded) or 0 (over).
_RATE = Script("""
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
""")

# Unique members of this process's hits. Never reset with the process state: a
# member used again would overwrite an earlier hit still in a window in Redis.
_MEMBER_PREFIX = uuid.uuid4().hex
_members = itertools.count()


def snapshot_key(process_id: str) -> str:
    """Return the Redis key of one process's snapshot."""
    return SNAPSHOT_PREFIX + process_id


def slots_key(user_id: int) -> str:
    """Return the Redis key of a user's connection slots (process id -> connections)."""
    return f"realtime:slots:{user_id}"


def rate_key(user_id: int, key: str) -> str:
    """Return the Redis key of a user's sliding log on ``key``."""
    return f"realtime:rate:{user_id}:{key}"


class RedisStore:
    """Registry, slots, rate logs and leases in Redis: the operations of realtime.stores."""

    errors = REDIS_ERRORS

    async def heartbeat(self, *, process_id: str, ttl: float, snapshot: dict) -> bool:
        """Register ``process_id`` until ``ttl`` from now with its snapshot; return whether anew."""
        text = json.dumps(snapshot, separators=(",", ":"))
        keys = [REGISTRY_KEY, snapshot_key(process_id)]
        return bool(await _HEARTBEAT(keys=keys, args=[process_id, math.ceil(ttl), text]))

    async def others(self, *, process_id: str) -> dict[str, bytes]:
        """Return the snapshots (JSON) of the live processes other than ``process_id``."""
        found = await _OTHERS(keys=[REGISTRY_KEY], args=[process_id, SNAPSHOT_PREFIX])
        return {found[i].decode(): found[i + 1] for i in range(0, len(found), 2)}

    async def slot_take(self, *, user_id: int, process_id: str, limit: int, ttl: float) -> tuple[bool, bool]:
        """Take a slot of ``user_id`` unless the live processes hold ``limit``; (admitted, anew)."""
        keys = [slots_key(user_id), REGISTRY_KEY]
        admitted, added = await _SLOT_TAKE(keys=keys, args=[process_id, limit, math.ceil(ttl)])
        return bool(admitted), bool(added)

    async def slot_give(self, *, user_id: int, process_id: str) -> None:
        """Give back a slot taken by :meth:`slot_take`."""
        await _SLOT_GIVE(keys=[slots_key(user_id)], args=[process_id])

    async def slots_set(self, *, process_id: str, counts: dict[int, int]) -> None:
        """Set the slot counts of ``process_id`` for the given users (one round trip)."""
        pipe = client().redis.pipeline(transaction=False)
        for user_id, count in counts.items():
            if count > 0:
                pipe.hset(slots_key(user_id), process_id, count)
            else:
                pipe.hdel(slots_key(user_id), process_id)
        await pipe.execute()

    async def rate_hit(self, *, user_id: int, key: str, count: int, seconds: float) -> bool:
        """Record a hit unless ``count`` were recorded within ``seconds``; return whether recorded."""
        member = f"{_MEMBER_PREFIX}:{next(_members)}"
        window = round(seconds * 1_000_000)
        return bool(await _RATE(keys=[rate_key(user_id, key)], args=[window, count, member]))

    def lease(self, name: str, seconds: float) -> RedisLease:
        """Return the lease of the exclusive job ``name``, held ``seconds`` per renewal."""
        return RedisLease(name, seconds)


class RedisLease:
    """redis-py's ``Lock`` (``SET NX PX``, owner-checked renewal) on a client of its own."""

    def __init__(self, name: str, seconds: float) -> None:
        self.client = Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        self.lock = self.client.lock(f"realtime:job:{name}", timeout=seconds, blocking=False)

    async def acquire(self) -> bool:
        """Return whether this process holds the lease now. Raises REDIS_ERRORS."""
        return bool(await self.lock.acquire())

    async def renew(self) -> bool:
        """Extend the lease to a full term; return False if it was lost. Raises REDIS_ERRORS."""
        try:
            await self.lock.reacquire()
        except LockError:
            return False
        return True

    async def release(self) -> None:
        """Give the lease back (another process takes over at once) and close the client."""
        try:
            with contextlib.suppress(LockError):
                await self.lock.release()
        finally:
            await self.client.aclose()
