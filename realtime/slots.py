"""The per-user connection cap: how many live sockets and streams a user holds, across processes.

:func:`admit` counts a new connection unless the user is at the limit;
:func:`release` gives its slot back. The check and the count are atomic:

* with ``REDIS_URL``, a hash per user of process id -> connections, and one
  Lua script that checks every live process's count (realtime.registry:
  the slots of a process whose entry expired stop counting, and are dropped
  by the next check of the user) and takes a slot, one round trip per
  handshake (and one per release, in a task of its own);
* without Redis, the check and the count happen with no await between them.

This process knows what it holds. When a slot call fails or is cancelled
midway, or Redis lost this process's entry (a restart, a stall past the
TTL), its counts in Redis are set again from what it holds, on the next
heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from . import metrics, redis_store, registry
from .process import process, spawn
from .services import REDIS_ERRORS

logger = logging.getLogger(__name__)

# KEYS: the user's slots (hash pid -> count), the registry. ARGV: pid, limit, ttl (s).
# Returns {admitted, registered anew}.
_SLOT_TAKE = redis_store.Script("""
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
_SLOT_GIVE = redis_store.Script("""
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return 1
""")


def slots_key(user_id: int) -> str:
    """Return the Redis key of a user's connection slots (process id -> connections)."""
    return f"realtime:slots:{user_id}"


async def slot_take(*, user_id: int, limit: int) -> tuple[bool, bool]:
    """Take a connection slot of ``user_id`` for this process unless all processes hold ``limit``.

    Also renews this process's registry entry. Returns (admitted, whether
    this process was registered anew: Redis lost its entry, so its other
    slots may be missing too). One round trip; raises REDIS_ERRORS.
    """
    admitted, added = await _SLOT_TAKE(
        keys=[slots_key(user_id), registry.REGISTRY_KEY], args=[registry.PROCESS_ID, limit, registry.ttl()]
    )
    return bool(admitted), bool(added)


async def slot_give(*, user_id: int) -> None:
    """Give back a slot taken by :func:`slot_take`. One round trip; raises REDIS_ERRORS."""
    await _SLOT_GIVE(keys=[slots_key(user_id)], args=[registry.PROCESS_ID])


async def slots_set(counts: dict[int, int]) -> None:
    """Set this process's slot counts of the given users (after Redis lost them). One round trip."""
    pipe = redis_store.client().redis.pipeline(transaction=False)
    for user_id, count in counts.items():
        if count > 0:
            pipe.hset(slots_key(user_id), registry.PROCESS_ID, count)
        else:
            pipe.hdel(slots_key(user_id), registry.PROCESS_ID)
    await pipe.execute()


@dataclass
class _Slots:
    """The connection slots of this process."""

    user_connections: Counter[int] = field(default_factory=Counter)
    # With Redis: the slots this process holds there per user, as far as it knows.
    redis_slots: Counter[int] = field(default_factory=Counter)
    # Users whose slots in Redis may be wrong (a call failed or was cancelled midway),
    # or all of them (Redis lost this process's entry): set again from user_connections.
    unsynced: set[int] = field(default_factory=set)
    resync_all: bool = False
    in_flight: Counter[int] = field(default_factory=Counter)  # slot calls under way, per user


process.declare("slots", _Slots)


def local_connections() -> int:
    """Return the live sockets and streams held by this process."""
    return sum(process.slots.user_connections.values())


async def admit(*, user_id: int, limit: int) -> bool:
    """Count a new connection of ``user_id`` unless it would pass ``limit``; return whether admitted.

    With Redis, every live process's connections count, checked and taken
    in one atomic script (one round trip). Without Redis, the check and the
    count happen with no await in between, so concurrent handshakes cannot
    all pass the same check. While Redis is down, this process's own
    connections are counted against the limit (logged).
    """
    if redis_store.shared():
        return await _admit_shared(user_id, limit)
    state = process.slots
    if state.user_connections[user_id] >= limit:
        return False
    state.user_connections[user_id] += 1
    # Connections changed: the next tick renews the entry (and finds out if Redis lost it).
    registry.publish_soon()
    return True


async def _admit_shared(user_id: int, limit: int) -> bool:
    registry.ensure_beating()  # the heartbeat keeps this process's slots counted
    state = process.slots
    state.in_flight[user_id] += 1
    try:
        admitted, registered = await slot_take(user_id=user_id, limit=limit)
    except asyncio.CancelledError:
        state.unsynced.add(user_id)  # the slot may be taken: the next tick sets it right
        raise
    except REDIS_ERRORS as exc:
        logger.warning("connection slots unavailable in Redis, counting this process's only: %s", exc)
        state.unsynced.add(user_id)
        if state.user_connections[user_id] >= limit:
            return False
        state.user_connections[user_id] += 1
        registry.publish_soon()
        return True
    finally:
        _decrement(state.in_flight, user_id)
    registry.registered(registered)
    if not admitted:
        return False
    state.user_connections[user_id] += 1
    state.redis_slots[user_id] += 1
    registry.publish_soon()
    return True


def release(*, user_id: int) -> None:
    """Uncount a connection counted by :func:`admit` (no await: it runs in every teardown).

    With Redis, the slot is given back in a task of its own, one round trip.
    """
    state = process.slots
    _decrement(state.user_connections, user_id)
    registry.publish_soon()
    if state.redis_slots.get(user_id):
        _decrement(state.redis_slots, user_id)
        spawn(_give_back(user_id))


async def _give_back(user_id: int) -> None:
    """Give a slot back in Redis; on failure the next tick sets this process's count there."""
    state = process.slots
    state.in_flight[user_id] += 1
    try:
        await slot_give(user_id=user_id)
    except asyncio.CancelledError:
        state.unsynced.add(user_id)
        raise
    except REDIS_ERRORS as exc:
        state.unsynced.add(user_id)
        logger.warning("giving back a connection slot in Redis failed: %s", exc)
    finally:
        _decrement(state.in_flight, user_id)


def _decrement(counter: Counter, key) -> None:
    """Decrement ``counter[key]``, dropping the key at zero."""
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        counter.pop(key, None)


def _resync_all() -> None:
    """Redis lost this process's entry, and maybe its slots: set every count again next tick."""
    process.slots.resync_all = True


async def _resync() -> None:
    """Set this process's slot counts in Redis to what it holds, for the users that may be wrong there."""
    state = process.slots
    if not (state.unsynced or state.resync_all):
        return
    users = set(state.unsynced)
    if state.resync_all:
        users |= set(state.user_connections) | set(state.redis_slots)
    # A user with a slot call under way waits for the next tick: its count in Redis is moving.
    busy = {user_id for user_id in users if state.in_flight.get(user_id)}
    users -= busy
    state.unsynced = busy
    state.resync_all = False
    if not users:
        return
    counts = {user_id: state.user_connections.get(user_id, 0) for user_id in users}
    for user_id, count in counts.items():
        if count:
            state.redis_slots[user_id] = count
        else:
            state.redis_slots.pop(user_id, None)
    try:
        await slots_set(counts)
    except BaseException:
        state.unsynced |= users  # again next tick
        raise


registry.on_lost(_resync_all)
registry.on_published(_resync)
metrics.CONNECTION_SLOTS.set_function(local_connections)
