"""Who the other server processes hold in each topic: deltas on the bus, snapshots to repair.

On a shared bus (Redis or PostgreSQL), a user becoming present in a topic
on this process (its first connection there) or absent (its last one gone)
is a *delta*. The deltas of one event-loop turn, and of however long the
previous send took, go out as one message to the reserved group
:data:`GROUP` through the channel layer: over Redis the relay carries it,
over PostgreSQL the event table. Every server process is a member of that
group from its first request on (one channel, delivered inline; a
background job, :func:`follow`) and applies them as they arrive.

Each process also keeps its full list per topic in its registry snapshot
(realtime.registry), read once a heartbeat tick: the snapshot repairs a
delta lost on the way, and a process whose entry expired (it died) has its
entries removed. Every delta batch carries a sequence number, and every
snapshot the number of the last batch taken before it: for each other
process, per topic, this process keeps the *set* of users it lists, and a
delta or a snapshot older than what was already applied is skipped. So a
delta and a later snapshot read never count a user twice, and a snapshot
written before a leave cannot bring the user back.

On the in-process bus there is no other process: nothing is sent or read.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from channels.layers import get_channel_layer

from . import background, buses, registry, stores
from .process import process
from .services import LAYER_ERRORS

logger = logging.getLogger(__name__)

GROUP = "realtime.presence"  # every process's one delta channel is a member
DELTA = "realtime.presence.delta"  # the layer message type of a batch of deltas

# Batch numbers of this process. Never reset with the process state: another
# process may hold a higher number from before a reset and would skip the next.
_batches = itertools.count(1)


@dataclass(eq=False)
class _Peer:
    """What this process knows of one other process's presence."""

    topics: dict[str, set[str]] = field(default_factory=dict)  # topic -> usernames it holds
    seq: int = -1  # the last batch applied, by a delta or a snapshot
    listed: bool = False  # read from the registry once: once gone from it, it died
    heard: float = field(default_factory=time.monotonic)  # its last delta


@dataclass
class _Peers:
    """The other processes' presence, and this process's deltas waiting to go out."""

    peers: dict[str, _Peer] = field(default_factory=dict)  # process id -> what it holds
    raw: dict = field(default_factory=dict)  # process id -> its snapshot as last read (JSON)
    pending: dict[str, dict[str, bool]] = field(default_factory=dict)  # topic -> username -> present
    last: int = 0  # the last batch taken from ``pending`` (in this process's snapshot)
    wake: asyncio.Event | None = None
    channel: str | None = None  # this process's member of GROUP


process.declare("presence_peers", _Peers)

# Called with (topic, usernames now listed by one more process, by one fewer).
Changed = Callable[[str, set[str], set[str]], None]
_hooks: list[Changed] = []


def on_change(hook: Changed) -> None:
    """Call ``hook(topic, added, removed)`` whenever another process's list for a topic changes."""
    _hooks.append(hook)


def _changed(topic: str, added: set[str], removed: set[str]) -> None:
    if added or removed:
        for hook in _hooks:
            hook(topic, added, removed)


# -- sending ---------------------------------------------------------------------------------


def note(topic: str, name: str, present: bool) -> None:
    """Publish soon that ``name`` became present in (or absent from) ``topic`` on this process."""
    if stores.current() is None:
        return  # one process: nobody to tell
    state = process.presence_peers
    state.pending.setdefault(topic, {})[name] = present
    if state.wake is None:
        state.wake = asyncio.Event()
    state.wake.set()
    process.loop_task("presence-deltas", _send)


async def _send() -> None:
    """Send the waiting deltas, one batch at a time, in order (this process's one sender)."""
    state = process.presence_peers
    layer = get_channel_layer()
    while True:
        await state.wake.wait()
        await asyncio.sleep(0)  # the rest of this turn's joins and leaves ride along
        state.wake.clear()
        if not state.pending:
            continue
        batch, state.pending = state.pending, {}
        state.last = seq = next(_batches)
        changes = {
            topic: [sorted(n for n, p in names.items() if p), sorted(n for n, p in names.items() if not p)]
            for topic, names in batch.items()
        }
        message = {"type": DELTA, "pid": registry.PROCESS_ID, "seq": seq, "changes": changes}
        try:
            await layer.group_send(GROUP, message)
        except LAYER_ERRORS as exc:  # the next snapshot carries them
            logger.warning("presence deltas not sent, the snapshot repairs them: %r", exc)


def _sequence() -> int:
    """Return the last batch taken: this process's snapshot reflects it and every one before."""
    return process.presence_peers.last


# -- receiving -------------------------------------------------------------------------------


def register_jobs() -> None:
    """On a shared bus, have every server process follow the deltas from its first request on."""
    if buses.selected() != "memory":
        background.register("realtime-presence-deltas", follow)


async def follow() -> None:
    """Subscribe to the deltas, start the heartbeat, and renew the membership once a tick (a job)."""
    await subscribe()
    registry.ensure_beating()  # registered, and reading the others' snapshots, from the start
    while True:
        await asyncio.sleep(registry.tick_seconds())
        await subscribe()


async def subscribe() -> None:
    """Make this process's delta channel a member of GROUP, or renew its membership."""
    if stores.current() is None:
        return
    state = process.presence_peers
    layer = get_channel_layer()
    if state.channel is None:
        channel = await layer.new_channel("presence.")
        layer.attach(channel, lambda message: _receive(channel, message))
        state.channel = channel
    try:
        await layer.group_add(GROUP, state.channel)
    except LAYER_ERRORS as exc:  # again next tick; the snapshots keep presence right meanwhile
        logger.warning("presence deltas: joining the bus failed: %r", exc)


def _receive(channel: str, message: dict) -> bool:
    """The delta channel's sink: apply another process's batch on arrival (always takes the message)."""
    state = process.presence_peers
    if state.channel != channel or message.get("type") != DELTA or message["pid"] == registry.PROCESS_ID:
        return True  # an earlier state's channel (tests), a control notice, or this process's own
    try:
        _apply_delta(state, message)
    except Exception:
        logger.exception("presence delta not applied; the next snapshot repairs it")
    return True


def _apply_delta(state: _Peers, message: dict) -> None:
    peer = state.peers.get(message["pid"])
    if peer is None:
        peer = state.peers[message["pid"]] = _Peer()
    if message["seq"] <= peer.seq:
        return  # a snapshot already reflects it
    peer.seq, peer.heard = message["seq"], time.monotonic()
    for topic, (joins, leaves) in message["changes"].items():
        names = peer.topics.setdefault(topic, set())
        added = {n for n in joins if n not in names}
        removed = {n for n in leaves if n in names}
        names |= added
        names -= removed
        if not names:
            del peer.topics[topic]
        _changed(topic, added, removed)


async def refresh() -> None:
    """Read the other live processes' snapshots: repair what deltas missed, drop the dead."""
    store = stores.current()
    if store is None:
        return  # nobody else can write to this process's memory
    try:
        raw = await store.others(process_id=registry.PROCESS_ID)
    except store.errors as exc:
        logger.warning("presence store unavailable, using the last snapshots read: %s", exc)
        return
    state = process.presence_peers
    before, state.raw = state.raw, raw
    for pid, text in raw.items():
        peer = state.peers.get(pid)
        if peer is None:
            peer = state.peers[pid] = _Peer()
        peer.listed = True
        if before.get(pid) == text:
            continue  # applied already, and deltas since (if any) are newer (a big snapshot costs to decode)
        snapshot = json.loads(text)
        seq = snapshot.get("seq", 0)
        if seq < peer.seq:
            continue  # older than deltas applied: the next snapshot, written after them, will do
        peer.seq = seq
        _replace(peer, {topic: set(names) for topic, names in snapshot.get("topics", {}).items()})
    expired = time.monotonic() - registry.ttl()
    for pid, peer in list(state.peers.items()):
        # Gone from the registry: dead, unless only heard of and not yet registered (just started).
        if pid not in raw and (peer.listed or peer.heard < expired):
            del state.peers[pid]
            _replace(peer, {})


def _replace(peer: _Peer, topics: dict[str, set[str]]) -> None:
    """Make ``topics`` what ``peer`` holds, telling the hooks what changed."""
    old, peer.topics = peer.topics, {topic: names for topic, names in topics.items() if names}
    for topic in set(old) | set(peer.topics):
        was, now = old.get(topic, set()), peer.topics.get(topic, set())
        if was != now:
            _changed(topic, now - was, was - now)


registry.snapshot_part("seq", _sequence)
