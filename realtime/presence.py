"""Who is online in each topic, counted per user across sockets and streams.

Presence is keyed by a topic's group (realtime.topics), whatever its kind.

Each server process keeps its own connections in memory. With ``REDIS_URL``
it writes a snapshot of them to Redis under a key that expires and keeps
its entry in the registry of live processes (a sorted set of process id ->
expiry, renewed with ``ZADD``: no read-modify-write, so processes starting
together cannot drop each other; realtime.limits), so the entries of a
crashed process fade out instead of haunting the list. Without Redis there
is no other process to tell, so nothing is written or read. Once a second
(less often when a tick is costly, see :data:`TICK_COST_FACTOR`), each
process reads the other processes' snapshots, compares the list of each
topic it serves with what its listeners last saw and sends them one
``presence_diff``: changes are coalesced, and a user's second tab joining
or leaving changes nothing.

The per-user connection cap (:func:`admit`) is atomic across processes:
with Redis one script checks every live process's count of the user and
takes a slot, one round trip per handshake (and one per release, in a task
of its own); without Redis the check and the count happen with no await
between them.

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
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from django.conf import settings

from . import events, limits, metrics
from .process import spawn
from .services import REDIS_ERRORS

logger = logging.getLogger(__name__)

PROCESS_ID = limits.PROCESS_ID
TICK_SECONDS = 1.0  # at least; see TICK_COST_FACTOR
TICK_COST_FACTOR = 10
PROCS_KEY = limits.REGISTRY_KEY
# During a burst of joins, a topic's list is encoded again only this many times
# its last encoding's duration after it (10,000 online: roughly every 50 ms here).
BATCH_COST_FACTOR = 20

# A listener is how a connection receives encoded presence events.
Deliver = Callable[[str], Awaitable[None]]


def snapshot_key(process_id: str) -> str:
    """Return the Redis key of one process's snapshot."""
    return limits.SNAPSHOT_PREFIX + process_id


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
    # With Redis: the slots this process holds there per user, as far as it knows.
    redis_slots: Counter[int] = field(default_factory=Counter)
    # Users whose slots in Redis may be wrong (a call failed or was cancelled midway),
    # or all of them (Redis lost this process's entry): set again from user_connections.
    unsynced: set[int] = field(default_factory=set)
    resync_all: bool = False
    in_flight: Counter[int] = field(default_factory=Counter)  # slot calls under way, per user
    others: dict = field(default_factory=dict)  # other processes' snapshots, last read
    others_raw: dict = field(default_factory=dict)  # the same, as read (JSON), to skip parsing
    dirty: bool = True
    last_heartbeat: float = 0.0
    ticker: asyncio.Task | None = None


_state = _State()


def reset() -> None:
    """Forget every local connection and rate-limit log (tests call this between cases)."""
    global _state
    if _state.ticker:
        _state.ticker.cancel()
    _state = _State()
    limits.local_log.clear()


def local_connections() -> int:
    """Return the live sockets and streams held by this process."""
    return sum(_state.user_connections.values())


async def admit(*, user_id: int, limit: int) -> bool:
    """Count a new connection of ``user_id`` unless it would pass ``limit``; return whether admitted.

    With Redis, every live process's connections count, checked and taken
    in one atomic script (one round trip). Without Redis, the check and the
    count happen with no await in between, so concurrent handshakes cannot
    all pass the same check. While Redis is down, this process's own
    connections are counted against the limit (logged).
    """
    if limits.shared():
        return await _admit_shared(user_id, limit)
    if _state.user_connections[user_id] >= limit:
        return False
    _state.user_connections[user_id] += 1
    _state.dirty = True
    return True


async def _admit_shared(user_id: int, limit: int) -> bool:
    _ensure_ticker()  # the heartbeat keeps this process's slots counted
    state = _state
    state.in_flight[user_id] += 1
    try:
        admitted, registered = await limits.slot_take(user_id=user_id, limit=limit)
    except asyncio.CancelledError:
        state.unsynced.add(user_id)  # the slot may be taken: the next tick sets it right
        raise
    except REDIS_ERRORS as exc:
        logger.warning("connection slots unavailable in Redis, counting this process's only: %s", exc)
        state.unsynced.add(user_id)
        if state.user_connections[user_id] >= limit:
            return False
        state.user_connections[user_id] += 1
        state.dirty = True
        return True
    finally:
        _decrement(state.in_flight, user_id)
    _registered(registered)
    if not admitted:
        return False
    state.user_connections[user_id] += 1
    state.redis_slots[user_id] += 1
    state.dirty = True
    return True


def release(*, user_id: int) -> None:
    """Uncount a connection counted by :func:`admit` (no await: it runs in every teardown).

    With Redis, the slot is given back in a task of its own, one round trip.
    """
    _decrement(_state.user_connections, user_id)
    _state.dirty = True
    if _state.redis_slots.get(user_id):
        _decrement(_state.redis_slots, user_id)
        spawn(_give_back(user_id))


async def _give_back(user_id: int) -> None:
    """Give a slot back in Redis; on failure the next tick sets this process's count there."""
    state = _state
    state.in_flight[user_id] += 1
    try:
        await limits.slot_give(user_id=user_id)
    except asyncio.CancelledError:
        state.unsynced.add(user_id)
        raise
    except REDIS_ERRORS as exc:
        state.unsynced.add(user_id)
        logger.warning("giving back a connection slot in Redis failed: %s", exc)
    finally:
        _decrement(state.in_flight, user_id)


# Whether this process has been in the registry: registered anew after that,
# Redis lost its entry (a restart, or this process stalled past the TTL) and
# maybe its slots with it.
_was_registered = False


def _registered(anew: bool) -> None:
    """Note a registration by a slot call or a heartbeat; after a loss, resynchronise every slot."""
    global _was_registered
    if anew and _was_registered:
        _state.resync_all = True
    _was_registered = True


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
    """Read the snapshots of the other live processes from Redis (kept as they were if it is down)."""
    if not limits.shared():
        return  # nobody else can write to this process's memory
    try:
        raw = await limits.others()
    except REDIS_ERRORS as exc:
        logger.warning("presence store unavailable, using the last snapshots read: %s", exc)
        return
    before, parsed = _state.others_raw, _state.others
    # Parse only what changed since the last read (a big snapshot is costly to decode).
    others = {pid: parsed[pid] if before.get(pid) == text else json.loads(text) for pid, text in raw.items()}
    _state.others_raw = raw
    _apply_others(others)


async def _write_snapshot() -> None:
    """Publish this process's connections for the other processes to read, and renew its registry entry."""
    topics = {topic: sorted(local.local) for topic, local in _state.topics.items() if local.local}
    snapshot = {"topics": topics}
    now = time.time()
    _registered(await limits.heartbeat(snapshot))
    _state.last_heartbeat = now


async def _resync_slots() -> None:
    """Set this process's slot counts in Redis to what it holds, for the users that may be wrong there."""
    users = set(_state.unsynced)
    if _state.resync_all:
        users |= set(_state.user_connections) | set(_state.redis_slots)
    # A user with a slot call under way waits for the next tick: its count in Redis is moving.
    busy = {user_id for user_id in users if _state.in_flight.get(user_id)}
    users -= busy
    _state.unsynced = busy
    _state.resync_all = False
    if not users:
        return
    counts = {user_id: _state.user_connections.get(user_id, 0) for user_id in users}
    for user_id, count in counts.items():
        if count:
            _state.redis_slots[user_id] = count
        else:
            _state.redis_slots.pop(user_id, None)
    try:
        await limits.slots_set(counts)
    except BaseException:
        _state.unsynced |= users  # again next tick
        raise


async def _publish() -> None:
    """With Redis: renew this process's registry entry and snapshot when due, and repair its slots."""
    # Heartbeat at a third of the TTL, so one missed beat expires nothing.
    heartbeat_due = time.time() - _state.last_heartbeat > settings.REALTIME_PRESENCE_TTL / 3
    try:
        if _state.dirty or heartbeat_due:
            _state.dirty = False
            try:
                await _write_snapshot()
            except BaseException:
                _state.dirty = True
                raise
        if _state.unsynced or _state.resync_all:
            await _resync_slots()
    except REDIS_ERRORS as exc:
        # Redis may blink (restarting): local diffs still go out, and this is tried again next tick.
        logger.warning("presence store unavailable, publishing next tick: %s", exc)


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
            if limits.shared():
                await _publish()
            await _refresh_others()
            await _send_diffs()
        except Exception:
            logger.exception("presence tick failed")  # presence catches up next tick
        # A tick that took long (diffs to 10,000 listeners) spaces out the next
        # ones, so presence never takes more than about 1/TICK_COST_FACTOR of the process.
        elapsed = time.perf_counter() - started
        metrics.presence_tick(elapsed)
        interval = max(TICK_SECONDS, elapsed * TICK_COST_FACTOR)


def _ensure_ticker() -> None:
    """Start the ticker on the running event loop if it is not running there."""
    loop = asyncio.get_running_loop()
    ticker = _state.ticker
    if ticker is None or ticker.done() or ticker.get_loop() is not loop:
        # A context of its own: it serves every topic, and outlives the connection that started it.
        _state.ticker = loop.create_task(_tick(), name="realtime-presence", context=contextvars.Context())


# Read at scrape time (realtime.metrics): the slots this process holds.
metrics.CONNECTION_SLOTS.set_function(local_connections)
