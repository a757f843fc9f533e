"""Who is online in each topic, counted per user across sockets and streams.

Presence is keyed by a topic's group (realtime.topics), whatever its kind.

Each server process keeps its own connections in memory and writes a
snapshot of them to Django's cache (Redis with ``REDIS_URL``) under a key
that expires, so the entries of a crashed process fade out instead of
haunting the list. With the local-memory cache there is no other process to
tell, so nothing is written or read. Once a second (less often when a tick
is costly, see :data:`TICK_COST_FACTOR`), each process reads the other
processes' snapshots, compares the list of each topic it serves with what
its listeners last saw and sends them one ``presence_diff``: changes are
coalesced, and a user's second tab joining or leaving changes nothing.

Nothing here is O(topic size) per connection. Each topic counts, per
username, the sources that list it (this process, each other process), updated as
connections come and go and as snapshots are read; a join that changes who
is online costs one sorted insert. The full list a joiner receives is
encoded once per batch of joins and shared: during a burst of joins, a
joiner waits for the next encoding, which comes :data:`BATCH_COST_FACTOR`
times as long after the previous one as that one took to build, so a
burst of joins spends at most about a twentieth of its time encoding lists.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import contextvars
import logging
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from . import caching, events
from .caching import cache_call
from .services import REDIS_ERRORS

logger = logging.getLogger(__name__)

PROCESS_ID = uuid.uuid4().hex
TICK_SECONDS = 1.0  # at least; see TICK_COST_FACTOR
TICK_COST_FACTOR = 10
PROCS_KEY = "realtime:presence:procs"
# During a burst of joins, a topic's list is encoded again only this many times
# its last encoding's duration after it (10,000 online: roughly every 50 ms here).
BATCH_COST_FACTOR = 20

# A listener is how a connection receives encoded presence events.
Deliver = Callable[[str], Awaitable[None]]


def snapshot_key(process_id: str) -> str:
    """Return the cache key of one process's snapshot."""
    return f"realtime:presence:proc:{process_id}"


@dataclass(eq=False)
class _Snapshot:
    """Who was online in a topic at one moment, with its presence event encoded."""

    users: frozenset[str]
    text: str


@dataclass(eq=False)
class _Topic:
    """One topic: this process's connections to it, and who is online in it anywhere."""

    local: Counter[str] = field(default_factory=Counter)  # username -> this process's connections
    online: Counter[str] = field(default_factory=Counter)  # username -> sources listing it
    names: list[str] = field(default_factory=list)  # online's usernames, sorted
    # listener -> the snapshot it was last told (None: its first one is on its way).
    listeners: dict[Deliver, _Snapshot | None] = field(default_factory=dict)
    current: _Snapshot | None = None  # of ``names``; None once it changed
    behind: bool = False  # some listener has not been told the latest change
    built_at: float = float("-inf")
    build_seconds: float = 0.0  # how long the last snapshot took to build
    batch: list[asyncio.Future] | None = None  # joiners waiting for the next snapshot

    def add(self, name: str) -> None:
        """Count one more source listing ``name``."""
        self.online[name] += 1
        if self.online[name] == 1:
            bisect.insort(self.names, name)
            self.current, self.behind = None, True

    def remove(self, name: str) -> None:
        """Count one source less listing ``name``."""
        left = self.online[name] - 1
        if left > 0:
            self.online[name] = left
            return
        del self.online[name]
        del self.names[bisect.bisect_left(self.names, name)]
        self.current, self.behind = None, True

    def snapshot(self) -> _Snapshot:
        """Return the current snapshot, encoding it if it changed."""
        if self.current is None:
            started = time.perf_counter()
            # events.presence() sorts again: linear on a sorted list.
            self.current = _Snapshot(frozenset(self.names), events.encode(events.presence(self.names)))
            self.build_seconds = time.perf_counter() - started
            self.built_at = time.monotonic()
        return self.current

    def idle(self) -> bool:
        """Return whether nothing here is worth keeping."""
        return not (self.listeners or self.local or self.online)


@dataclass
class _State:
    """This process's presence state."""

    topics: dict[str, _Topic] = field(default_factory=dict)
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
    """Count a new connection of ``user_id`` unless it would pass ``limit``; return whether admitted.

    Other processes' connections are counted as of the last tick (at most a
    second old), so a handshake costs no cache round trip.
    """
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
    _decrement(_state.user_connections, user_id)
    _state.dirty = True


async def join(*, topic: str, user, deliver: Deliver) -> str:
    """Register a connection of ``user`` in the topic group ``topic``; return the presence event (encoded).

    The event lists who is online, the joiner included; ``deliver`` then
    receives the changes since, once a tick.
    """
    local = _topic(topic)
    name = user.get_username()
    local.listeners[deliver] = None
    local.local[name] += 1
    if local.local[name] == 1:
        local.add(name)
    _state.dirty = True
    _ensure_ticker()
    snapshot = local.current or await _joiner_snapshot(local)
    if deliver in local.listeners:  # not left meanwhile
        local.listeners[deliver] = snapshot
        if snapshot is not local.current:
            local.behind = True
    return snapshot.text


def leave(*, topic: str, user, deliver: Deliver) -> None:
    """Unregister a connection added by :func:`join` (no await: it runs in every teardown)."""
    local = _state.topics.get(topic)
    if local is None or deliver not in local.listeners:
        return
    del local.listeners[deliver]
    name = user.get_username()
    if _decrement(local.local, name) == 0:
        local.remove(name)
    _state.dirty = True


async def topic_users(topic: str) -> list[str]:
    """Return the usernames online in the topic group ``topic`` across all processes."""
    await _refresh_others()
    local = _state.topics.get(topic)
    return list(local.names) if local else []


async def online_counts(kind: str) -> dict[str, int]:
    """Return the number of users online per key of the topics of ``kind``, across all processes."""
    await _refresh_others()
    prefix = f"{kind}."
    return {
        group.removeprefix(prefix): len(local.online)
        for group, local in _state.topics.items()
        if local.online and group.startswith(prefix)
    }


def _topic(topic: str) -> _Topic:
    local = _state.topics.get(topic)
    if local is None:
        local = _state.topics[topic] = _Topic()
    return local


def _decrement(counter: Counter, key) -> int:
    """Decrement ``counter[key]``, dropping the key at zero; return what is left."""
    left = counter[key] - 1
    if left > 0:
        counter[key] = left
    else:
        counter.pop(key, None)
    return max(left, 0)


async def _joiner_snapshot(local: _Topic) -> _Snapshot:
    """Return a snapshot that includes every join so far, shared by a burst of joiners."""
    loop = asyncio.get_running_loop()
    wait = local.built_at + local.build_seconds * BATCH_COST_FACTOR - time.monotonic()
    if wait <= 0:
        return local.snapshot()
    if local.batch is None:
        local.batch = []
        loop.call_later(wait, _end_batch, local)
    # A future per joiner: one cancelled (its client left) must not cancel the others.
    waiter = loop.create_future()
    local.batch.append(waiter)
    return await waiter


def _end_batch(local: _Topic) -> None:
    """Called when a batch's wait is over: give its joiners one snapshot."""
    batch, local.batch = local.batch or [], None
    snapshot = local.snapshot()
    for waiter in batch:
        if not waiter.done():
            waiter.set_result(snapshot)


def _apply_others(others: dict) -> None:
    """Take the other processes' snapshots just read into each topic's counts."""
    before = _state.others
    for pid in set(before) | set(others):
        old, new = before.get(pid, {}).get("topics", {}), others.get(pid, {}).get("topics", {})
        if old == new:
            continue
        for topic in set(old) | set(new):
            was, now = set(old.get(topic, ())), set(new.get(topic, ()))
            if was == now:
                continue
            local = _topic(topic)
            for name in now - was:
                local.add(name)
            for name in was - now:
                local.remove(name)
    _state.others = others


async def _refresh_others() -> None:
    """Read the snapshots of the other live processes from the cache (kept as they were if it is down)."""
    if caching.is_local():
        return  # nobody else can write to this process's memory
    try:
        procs = await cache_call("get", PROCS_KEY) or {}
        now = time.time()
        keys = [snapshot_key(pid) for pid, expires in procs.items() if pid != PROCESS_ID and expires > now]
        others = await cache_call("get_many", keys) if keys else {}
    except REDIS_ERRORS as exc:
        logger.warning("presence cache unavailable, using the last snapshots read: %s", exc)
        return
    _apply_others(others)


async def _write_snapshot() -> None:
    """Publish this process's connections for the other processes to read."""
    snapshot = {
        "topics": {topic: sorted(local.local) for topic, local in _state.topics.items() if local.local},
        "users": {str(uid): n for uid, n in _state.user_connections.items()},
    }
    ttl = settings.REALTIME_PRESENCE_TTL
    await cache_call("set", snapshot_key(PROCESS_ID), snapshot, timeout=ttl)
    now = time.time()
    # Read-modify-write: a concurrent process may drop our entry; the next
    # heartbeat puts it back, and expired entries are pruned here.
    procs = {pid: t for pid, t in (await cache_call("get", PROCS_KEY) or {}).items() if t > now}
    procs[PROCESS_ID] = now + ttl
    await cache_call("set", PROCS_KEY, procs, timeout=None)
    _state.last_heartbeat = now


async def _send_diffs() -> None:
    """Tell each listener how its topic changed since it last heard (one encoding per baseline)."""
    for topic, local in list(_state.topics.items()):
        if local.idle():
            del _state.topics[topic]
            continue
        if not local.behind or not local.listeners:
            continue
        local.behind = False
        current = local.snapshot()
        texts: dict[_Snapshot, str] = {}
        for deliver, seen in list(local.listeners.items()):
            if seen is None or seen is current or local.listeners.get(deliver) is not seen:
                continue
            text = texts.get(seen)
            if text is None:
                joins, leaves = current.users - seen.users, seen.users - current.users
                diff = events.presence_diff(joins=list(joins), leaves=list(leaves))
                text = texts[seen] = events.encode(diff) if joins or leaves else ""
            local.listeners[deliver] = current
            if text:
                with contextlib.suppress(Exception):
                    await deliver(text)


async def _tick() -> None:
    """Once a tick: publish our snapshot when it changed, read the others', send diffs."""
    interval = TICK_SECONDS
    while True:
        await asyncio.sleep(interval)
        started = time.perf_counter()
        try:
            if not caching.is_local():
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
        # A tick that took long (diffs to 10,000 listeners) spaces out the next
        # ones, so presence never takes more than about 1/TICK_COST_FACTOR of the process.
        interval = max(TICK_SECONDS, (time.perf_counter() - started) * TICK_COST_FACTOR)


def _ensure_ticker() -> None:
    """Start the ticker on the running event loop if it is not running there."""
    loop = asyncio.get_running_loop()
    ticker = _state.ticker
    if ticker is None or ticker.done() or ticker.get_loop() is not loop:
        # A context of its own: it serves every topic, and outlives the connection that started it.
        _state.ticker = loop.create_task(_tick(), name="realtime-presence", context=contextvars.Context())
