"""The registry of live server processes, and this process's heartbeat.

On a shared bus (Redis or PostgreSQL, realtime.stores) every process keeps
an entry in the store: its process id, an expiry and a snapshot for the
others to read, renewed in one atomic step (no read-modify-write, so
processes starting together cannot drop each other). A process that dies
stops renewing its entry: once it expires (``REALTIME_PRESENCE_TTL``) its
snapshot and its connection slots stop counting, so they fade out instead
of haunting the cluster. On the in-process bus there is no other process,
and nothing is written.

One heartbeat per event loop (:func:`ensure_beating`) runs once a tick
(:func:`tick_seconds`; less often when a tick is costly, see
:data:`TICK_COST_FACTOR`): it
renews the entry with the snapshot when that changed or a third of the TTL
went by, then runs what other modules hooked onto it. The registry knows
none of them: realtime.presence adds its part of the snapshot and reads
the others' each tick (its changes travel as deltas on the bus meanwhile,
realtime.presence_peers); realtime.slots repairs its counts in the store, and
hears when the store lost this process's entry (and maybe its slots with it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from . import metrics, stores
from .appsettings import app_setting
from .process import process

logger = logging.getLogger(__name__)

PROCESS_ID = uuid.uuid4().hex
TICK_SECONDS = 1.0  # at least, unless REALTIME_HEARTBEAT_SECONDS says otherwise; see TICK_COST_FACTOR
TICK_COST_FACTOR = 10


def tick_seconds() -> float:
    """Return the shortest time between ticks: ``REALTIME_HEARTBEAT_SECONDS``, else :data:`TICK_SECONDS`.

    At most a third of the TTL: entries are renewed on ticks only, and must not expire between two.
    """
    wanted = float(app_setting("REALTIME_HEARTBEAT_SECONDS", 0.0)) or TICK_SECONDS
    return min(wanted, ttl() / 3)


def ttl() -> int:
    """Return how long an entry lives without renewal, in whole seconds (``REALTIME_PRESENCE_TTL``)."""
    return max(1, math.ceil(settings.REALTIME_PRESENCE_TTL))


async def heartbeat(snapshot: dict, *, process_id: str = PROCESS_ID) -> bool:
    """Register this process until the TTL from now and store its snapshot; return whether registered anew.

    Processes that register at the same moment cannot drop each other. One
    round trip; raises the store's errors.
    """
    return await stores.required().heartbeat(process_id=process_id, ttl=ttl(), snapshot=snapshot)


async def others(*, process_id: str = PROCESS_ID) -> dict[str, str | bytes]:
    """Return the snapshots (JSON) of the other live processes by process id. One round trip."""
    return await stores.required().others(process_id=process_id)


@dataclass
class _Hooks:
    """What other modules run on the heartbeat (registered at their import; never reset)."""

    snapshot: dict[str, Callable[[], Any]] = field(default_factory=dict)  # part name -> its value now
    published: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    lost: list[Callable[[], None]] = field(default_factory=list)
    tick: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


_hooks = _Hooks()


def snapshot_part(name: str, value: Callable[[], Any]) -> None:
    """Publish ``value()`` as ``name`` in this process's snapshot, for the other processes to read."""
    _hooks.snapshot[name] = value


def on_published(hook: Callable[[], Awaitable[None]]) -> None:
    """Await ``hook()`` after each renewal of the entry (on a shared bus; on its errors, again next tick)."""
    _hooks.published.append(hook)


def on_lost(hook: Callable[[], None]) -> None:
    """Call ``hook()`` when this process finds itself registered anew: the store lost its entry."""
    _hooks.lost.append(hook)


def on_tick(hook: Callable[[], Awaitable[None]]) -> None:
    """Await ``hook()`` once a tick, after this process's entry is renewed."""
    _hooks.tick.append(hook)


@dataclass
class _Beat:
    """This process's side of the registry."""

    changed: bool = True  # the snapshot: published with the next tick
    last_heartbeat: float = 0.0
    # Whether this process has been in the registry: registered anew after that,
    # the store lost its entry (a restart, or this process stalled past the TTL).
    was_registered: bool = False


process.declare("registry", _Beat)


def publish_soon() -> None:
    """Have the next tick renew this process's entry and snapshot (its connections changed)."""
    process.registry.changed = True


def registered(anew: bool) -> None:
    """Note a registration by a heartbeat or a slot call; after a loss, tell the ``on_lost`` hooks."""
    state = process.registry
    if anew and state.was_registered:
        for hook in _hooks.lost:
            hook()
    state.was_registered = True


def ensure_beating() -> None:
    """Start the heartbeat on the running event loop if it is not running there."""
    process.loop_task("heartbeat", _beat)


async def _write_snapshot() -> None:
    """Publish this process's snapshot for the other processes to read, and renew its entry."""
    snapshot = {name: value() for name, value in _hooks.snapshot.items()}
    now = time.time()
    registered(await heartbeat(snapshot))
    process.registry.last_heartbeat = now


async def _publish(store: stores.Store) -> None:
    """Renew this process's entry and snapshot in ``store`` when due, then run the ``on_published`` hooks."""
    state = process.registry
    # Heartbeat at a third of the TTL, so one missed beat expires nothing.
    heartbeat_due = time.time() - state.last_heartbeat > ttl() / 3
    try:
        if state.changed or heartbeat_due:
            state.changed = False
            try:
                await _write_snapshot()
            except BaseException:
                state.changed = True
                raise
        for hook in _hooks.published:
            await hook()
    except store.errors as exc:
        # The store may blink (restarting): local diffs still go out, and this is tried again next tick.
        logger.warning("process registry unavailable, publishing next tick: %s", exc)


async def _beat() -> None:
    """Once a tick: publish this process's snapshot when due, then run the ``on_tick`` hooks."""
    interval = tick_seconds()
    while True:
        await asyncio.sleep(interval)
        started = time.perf_counter()
        try:
            store = stores.current()
            if store is not None:
                await _publish(store)
            for hook in _hooks.tick:
                await hook()
        except Exception:
            logger.exception("heartbeat tick failed")  # caught up next tick
        # A tick that took long (diffs to 10,000 listeners) spaces out the next
        # ones, so the heartbeat never takes more than about 1/TICK_COST_FACTOR of the process.
        elapsed = time.perf_counter() - started
        metrics.presence_tick(elapsed)
        interval = max(tick_seconds(), elapsed * TICK_COST_FACTOR)
