"""Who is online in each topic, counted per user across sockets and streams.

Presence is keyed by a topic's group (realtime.topics), whatever its kind.

Each server process keeps its own connections in memory; on a shared bus
(Redis or PostgreSQL) the processes tell each other their changes as
deltas on the bus, repaired by the registry's snapshots
(realtime.presence_peers). Each topic's listeners get one ``presence_diff``
from what each last saw, coalesced (realtime.presence_diffs): soon after
another process's change arrives, and once a heartbeat tick for what is
still due (this process's own joins and leaves); a user's second tab
joining or leaving changes nothing.

Nothing here is O(topic size) per connection. Each topic counts, per
username, the sources that list it (this process, each other process),
updated as connections, deltas and snapshots come; a join that changes who
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
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from . import events, presence_diffs, presence_peers, registry
from .process import process

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
    sent_at: float = float("-inf")  # the last diffs sent to its listeners (realtime.presence_diffs)
    send_seconds: float = 0.0  # how long sending them took
    flush: asyncio.TimerHandle | None = None  # the diffs scheduled

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

    def leave_local(self, name: str) -> bool:
        """Count one connection of ``name`` less here; return whether it was its last (then unlisted)."""
        left = self.local[name] - 1
        if left > 0:
            self.local[name] = left
            return False
        self.local.pop(name, None)
        self.remove(name)
        return True

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
    """This process's presence: its topics (the other processes' lists: realtime.presence_peers)."""

    topics: dict[str, _Topic] = field(default_factory=dict)


process.declare("presence", _Presence)


async def join(*, topic: str, user, deliver: Deliver) -> str:
    """Register a connection of ``user`` in the topic group ``topic``; return the presence event (encoded).

    The event lists who is online, the joiner included; ``deliver`` then
    receives the changes since, coalesced (at the latest on the next tick).
    """
    local = _topic(topic)
    name = user.get_username()
    local.listeners[deliver] = None
    local.local[name] += 1
    if local.local[name] == 1:
        local.add(name)
        presence_peers.note(topic, name, True)
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
    name = user.get_username()
    if local.leave_local(name):
        presence_peers.note(topic, name, False)
    registry.publish_soon()


async def topic_users(topic: str) -> list[str]:
    """Return the usernames online in the topic group ``topic`` across all processes."""
    await presence_peers.refresh()
    local = process.presence.topics.get(topic)
    return list(local.names) if local else []


async def online_counts(kind: str) -> dict[str, int]:
    """Return the number of users online per key of the topics of ``kind``, across all processes."""
    await presence_peers.refresh()
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


def _peer_changed(topic: str, added: set[str], removed: set[str]) -> None:
    """Take another process's change to a topic's list into its counts; its listeners hear soon."""
    local = _topic(topic)
    for name in added:
        local.add(name)
    for name in removed:
        local.remove(name)
    presence_diffs.schedule(local)


async def _send_diffs() -> None:
    """Once a tick: drop idle topics, and schedule the diffs that no change scheduled (a backstop)."""
    topics = process.presence.topics
    for topic, local in list(topics.items()):
        if local.idle():
            presence_diffs.cancel(local)
            del topics[topic]
        elif local.behind:
            presence_diffs.schedule(local)


async def _tick() -> None:
    """Once a heartbeat tick: repair from the other processes' snapshots, send the diffs still due."""
    await presence_peers.refresh()
    await _send_diffs()


registry.snapshot_part("topics", _local_topics)
registry.on_tick(_tick)
presence_peers.on_change(_peer_changed)
