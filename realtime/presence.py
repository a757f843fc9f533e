"""Who is online in each room, counted per user across sockets and streams.

Each server process keeps its own connections in memory and writes a
snapshot of them to Django's cache (local memory by default, Redis with
``REDIS_URL``) under a key that expires, so the entries of a crashed process
fade out instead of haunting the list. Readers merge the snapshots of every
live process. Once a second, each process compares the merged list of each
room it serves with what its listeners last saw and sends them one
``presence_diff``: changes are coalesced, and a user's second tab joining or
leaving changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache

from . import events
from .services import REDIS_ERRORS

logger = logging.getLogger(__name__)

PROCESS_ID = uuid.uuid4().hex
TICK_SECONDS = 1.0
PROCS_KEY = "realtime:presence:procs"

# A listener is how a connection receives encoded presence events.
Deliver = Callable[[str], Awaitable[None]]


def snapshot_key(process_id: str) -> str:
    """Return the cache key of one process's snapshot."""
    return f"realtime:presence:proc:{process_id}"


@dataclass
class _Room:
    """This process's connections to one room."""

    users: Counter[str] = field(default_factory=Counter)
    # deliver -> the user list that listener has last been told.
    seen: dict[Deliver, frozenset[str]] = field(default_factory=dict)


@dataclass
class _State:
    """This process's presence state."""

    rooms: dict[str, _Room] = field(default_factory=dict)
    user_connections: Counter[int] = field(default_factory=Counter)
    others: dict = field(default_factory=dict)  # other processes' snapshots, last read
    dirty: bool = True
    last_heartbeat: float = 0.0
    ticker: asyncio.Task | None = None


_state = _State()


def reset() -> None:
    """Forget every local connection (tests call this between cases)."""
    global _state
    if _state.ticker:
        _state.ticker.cancel()
    _state = _State()


def local_connections() -> int:
    """Return the live sockets and streams held by this process."""
    return sum(_state.user_connections.values())


async def admit(*, user_id: int, limit: int) -> bool:
    """Count a new connection of ``user_id`` unless it would pass ``limit``; return whether admitted."""
    await _refresh_others()
    remote = sum(s["users"].get(str(user_id), 0) for s in _state.others.values())
    # Check and count with no await in between, so concurrent handshakes
    # cannot all pass the same check.
    if _state.user_connections[user_id] + remote >= limit:
        return False
    _state.user_connections[user_id] += 1
    _state.dirty = True
    return True


def release(*, user_id: int) -> None:
    """Uncount a connection counted by :func:`admit`."""
    _state.user_connections[user_id] -= 1
    _state.user_connections += Counter()  # drop users whose count reached zero
    _state.dirty = True


async def join(*, room: str, user, deliver: Deliver) -> list[str]:
    """Register a connection of ``user`` in ``room``; return who is online now."""
    local = _state.rooms.setdefault(room, _Room())
    local.users[user.get_username()] += 1
    _state.dirty = True
    _ensure_ticker()
    await _refresh_others()
    online = _merged(room)
    local.seen[deliver] = online
    return sorted(online)


async def leave(*, room: str, user, deliver: Deliver) -> None:
    """Unregister a connection added by :func:`join`."""
    local = _state.rooms.get(room)
    if local is None or deliver not in local.seen:
        return
    del local.seen[deliver]
    local.users[user.get_username()] -= 1
    local.users += Counter()  # drop users whose count reached zero
    _state.dirty = True


async def room_users(room: str) -> list[str]:
    """Return the usernames online in ``room`` across all processes."""
    await _refresh_others()
    return sorted(_merged(room))


async def online_counts() -> dict[str, int]:
    """Return the number of users online per room across all processes."""
    await _refresh_others()
    rooms = set(_state.rooms)
    for snapshot in _state.others.values():
        rooms.update(snapshot["rooms"])
    return {room: len(_merged(room)) for room in rooms}


def _merged(room: str) -> frozenset[str]:
    """Return the union of this process's and the other processes' users in ``room``."""
    users = set(_state.rooms[room].users) if room in _state.rooms else set()
    for snapshot in _state.others.values():
        users.update(snapshot["rooms"].get(room, ()))
    return frozenset(users)


async def _refresh_others() -> None:
    """Read the snapshots of the other live processes from the cache (kept as they were if it is down)."""
    try:
        procs = await cache.aget(PROCS_KEY) or {}
        now = time.time()
        keys = [snapshot_key(pid) for pid, expires in procs.items() if pid != PROCESS_ID and expires > now]
        _state.others = await cache.aget_many(keys) if keys else {}
    except REDIS_ERRORS as exc:
        logger.warning("presence cache unavailable, using the last snapshots read: %s", exc)


async def _write_snapshot() -> None:
    """Publish this process's connections for the other processes to read."""
    snapshot = {
        "rooms": {room: sorted(local.users) for room, local in _state.rooms.items() if local.users},
        "users": {str(uid): n for uid, n in _state.user_connections.items()},
    }
    ttl = settings.REALTIME_PRESENCE_TTL
    await cache.aset(snapshot_key(PROCESS_ID), snapshot, timeout=ttl)
    now = time.time()
    # Read-modify-write: a concurrent process may drop our entry; the next
    # heartbeat puts it back, and expired entries are pruned here.
    procs = {pid: t for pid, t in (await cache.aget(PROCS_KEY) or {}).items() if t > now}
    procs[PROCESS_ID] = now + ttl
    await cache.aset(PROCS_KEY, procs, timeout=None)
    _state.last_heartbeat = now


async def _send_diffs() -> None:
    """Tell each listener how its room changed since it last heard."""
    for room, local in list(_state.rooms.items()):
        if not local.seen:
            if not local.users:
                del _state.rooms[room]
            continue
        online = _merged(room)
        by_baseline: dict[frozenset[str], list[Deliver]] = {}
        for deliver, seen in local.seen.items():
            if seen != online:
                by_baseline.setdefault(seen, []).append(deliver)
        for seen, delivers in by_baseline.items():
            text = events.encode(events.presence_diff(joins=list(online - seen), leaves=list(seen - online)))
            for deliver in delivers:
                if deliver in local.seen:
                    local.seen[deliver] = online
                    with contextlib.suppress(Exception):
                        await deliver(text)


async def _tick() -> None:
    """Once a second: publish our snapshot when it changed, read the others', send diffs."""
    while True:
        await asyncio.sleep(TICK_SECONDS)
        try:
            # Heartbeat at a third of the TTL, so one missed beat expires nothing.
            heartbeat_due = time.time() - _state.last_heartbeat > settings.REALTIME_PRESENCE_TTL / 3
            if _state.dirty or heartbeat_due:
                _state.dirty = False
                await _write_snapshot()
            await _refresh_others()
            await _send_diffs()
        except Exception:
            # The cache may blink (Redis restarting); presence catches up next tick.
            logger.exception("presence tick failed")


def _ensure_ticker() -> None:
    """Start the ticker on the running event loop if it is not running there."""
    loop = asyncio.get_running_loop()
    ticker = _state.ticker
    if ticker is None or ticker.done() or ticker.get_loop() is not loop:
        _state.ticker = loop.create_task(_tick(), name="realtime-presence")
