"""Who is online in each topic, counted per user across sockets and streams.

Presence is keyed by a topic's group (realtime.topics), whatever its kind.

Each server process keeps its own connections in memory. On a shared bus
(Redis or PostgreSQL) it publishes who it holds in each topic in its
snapshot in the registry of live processes (realtime.registry), so the
entries of a crashed process fade out instead of haunting the list. On the
in-process bus there is no other process to tell, so nothing is written or
read. Once a heartbeat tick, each
process reads the other processes' snapshots, compares the list of each
topic it serves with what its listeners last saw and sends them one
``presence_diff``: changes are coalesced, and a user's second tab joining
or leaving changes nothing.

Nothing here is O(topic size) per connection. Each topic counts, per
username, the sources that list it (this process, each other process), updated as
connections come and go and as snapshots are read; a join that changes who
is online costs one sorted insert. The full list a joiner receives is
encoded once per batch of joins and shared: during a burst of joins, a
joiner waits for the next encoding, which comes :data:`BATCH_COST_FACTOR`
times as long after the previous one as that one took to build, so a
burst of joins spends at most about a twentieth of its time encoding lists
(the wait is capped by :data:`BATCH_MAX_WAIT`).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import events, registry, stores
from .process import process

logger = logging.getLogger(__name__)

# During a burst of joins, a topic's list is encoded again only this many times
# its last encoding's duration after it (10,000 online: roughly every 50 ms here).
BATCH_COST_FACTOR = 20
# ...but never longer than this: one encoding slowed by a pause (GC, a busy
# machine) must not hold the next joiners for twenty times that pause.
BATCH_MAX_WAIT = 0.25

# A listener is how a connection receives encoded presence events.
Deliver = Callable[[str], Awaitable[None]]


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

    def leave_local(self, name: str) -> None:
        """Count one connection of ``name`` less here; after its last, this process lists it no more."""
        left = self.local[name] - 1
        if left > 0:
            self.local[name] = left
            return
        self.local.pop(name, None)
        self.remove(name)

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
class _Presence:
    """This process's presence: its topics, and the other processes' snapshots last read."""

    topics: dict[str, _Topic] = field(default_factory=dict)
    others: dict = field(default_factory=dict)  # other processes' snapshots, last read
    others_raw: dict = field(default_factory=dict)  # the same, as read (JSON), to skip parsing


process.declare("presence", _Presence)


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
    registry.publish_soon()
    registry.ensure_beating()
    snapshot = local.current or await _joiner_snapshot(local)
    if deliver in local.listeners:  # not left meanwhile
        local.listeners[deliver] = snapshot
        if snapshot is not local.current:
            local.behind = True
    return snapshot.text


def leave(*, topic: str, user, deliver: Deliver) -> None:
    """Unregister a connection added by :func:`join` (no await: it runs in every teardown)."""
    local = process.presence.topics.get(topic)
    if local is None or deliver not in local.listeners:
        return
    del local.listeners[deliver]
    local.leave_local(user.get_username())
    registry.publish_soon()


async def topic_users(topic: str) -> list[str]:
    """Return the usernames online in the topic group ``topic`` across all processes."""
    await _refresh_others()
    local = process.presence.topics.get(topic)
    return list(local.names) if local else []


async def online_counts(kind: str) -> dict[str, int]:
    """Return the number of users online per key of the topics of ``kind``, across all processes."""
    await _refresh_others()
    prefix = f"{kind}."
    return {
        group.removeprefix(prefix): len(local.online)
        for group, local in process.presence.topics.items()
        if local.online and group.startswith(prefix)
    }


def _topic(topic: str) -> _Topic:
    topics = process.presence.topics
    local = topics.get(topic)
    if local is None:
        local = topics[topic] = _Topic()
    return local


async def _joiner_snapshot(local: _Topic) -> _Snapshot:
    """Return a snapshot that includes every join so far, shared by a burst of joiners."""
    loop = asyncio.get_running_loop()
    wait = local.built_at + min(local.build_seconds * BATCH_COST_FACTOR, BATCH_MAX_WAIT) - time.monotonic()
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


def _local_topics() -> dict[str, list[str]]:
    """Return who this process holds in each topic (its part of its registry snapshot)."""
    return {topic: sorted(local.local) for topic, local in process.presence.topics.items() if local.local}


def _apply_others(others: dict) -> None:
    """Take the other processes' snapshots just read into each topic's counts."""
    state = process.presence
    before = state.others
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
    state.others = others


async def _refresh_others() -> None:
    """Read the snapshots of the other live processes from the store (kept as they were if it is down)."""
    store = stores.current()
    if store is None:
        return  # nobody else can write to this process's memory
    try:
        raw = await store.others(process_id=registry.PROCESS_ID)
    except store.errors as exc:
        logger.warning("presence store unavailable, using the last snapshots read: %s", exc)
        return
    state = process.presence
    before, parsed = state.others_raw, state.others
    # Parse only what changed since the last read (a big snapshot is costly to decode).
    others = {pid: parsed[pid] if before.get(pid) == text else json.loads(text) for pid, text in raw.items()}
    state.others_raw = raw
    _apply_others(others)


async def _send_diffs() -> None:
    """Tell each listener how its topic changed since it last heard (one encoding per baseline)."""
    topics = process.presence.topics
    for topic, local in list(topics.items()):
        if local.idle():
            del topics[topic]
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
    """Once a heartbeat tick: read the other processes' snapshots, then tell each listener what changed."""
    await _refresh_others()
    await _send_diffs()


registry.snapshot_part("topics", _local_topics)
registry.on_tick(_tick)
