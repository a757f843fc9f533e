"""The per-user connection cap: how many live sockets and streams a user holds, across processes.

:func:`admit` counts a new connection unless the user is at the limit;
:func:`release` gives its slot back. The check and the count are atomic:

* on a shared bus, the store of realtime.stores (Redis: a hash per user of
  process id -> connections and a Lua script; PostgreSQL: a row per user
  and process and a function holding the user's advisory lock) checks
  every live process's count (realtime.registry: the slots of a process
  whose entry expired stop counting, and are dropped) and takes a slot,
  one round trip per handshake (and one per release, in a task of its own);
* on the in-process bus, the check and the count happen with no await
  between them.

This process knows what it holds. When a slot call fails or is cancelled
midway, or the store lost this process's entry (a restart, a stall past
the TTL), its counts in the store are set again from what it holds, on the
next heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field

from . import metrics, registry, stores
from .process import process, spawn

logger = logging.getLogger(__name__)


async def slot_take(*, user_id: int, limit: int) -> tuple[bool, bool]:
    """Take a connection slot of ``user_id`` for this process unless all processes hold ``limit``.

    Also renews this process's registry entry. Returns (admitted, whether
    this process was registered anew: the store lost its entry, so its other
    slots may be missing too). One round trip; raises the store's errors.
    """
    return await stores.required().slot_take(
        user_id=user_id, process_id=registry.PROCESS_ID, limit=limit, ttl=registry.ttl()
    )


@dataclass
class _Slots:
    """The connection slots of this process."""

    user_connections: Counter[int] = field(default_factory=Counter)
    # On a shared bus: the slots this process holds in the store per user, as far as it knows.
    stored_slots: Counter[int] = field(default_factory=Counter)
    # Users whose slots in the store may be wrong (a call failed or was cancelled midway),
    # or all of them (the store lost this process's entry): set again from user_connections.
    unsynced: set[int] = field(default_factory=set)
    resync_all: bool = False
    in_flight: Counter[int] = field(default_factory=Counter)  # slot calls under way, per user


process.declare("slots", _Slots)


def local_connections() -> int:
    """Return the live sockets and streams held by this process."""
    return sum(process.slots.user_connections.values())


async def admit(*, user_id: int, limit: int) -> bool:
    """Count a new connection of ``user_id`` unless it would pass ``limit``; return whether admitted.

    On a shared bus, every live process's connections count, checked and
    taken in one atomic step of the store (one round trip). On the
    in-process bus, the check and the count happen with no await in
    between, so concurrent handshakes cannot all pass the same check. While
    the store is down, this process's own connections are counted against
    the limit (logged).
    """
    store = stores.current()
    if store is not None:
        return await _admit_shared(store, user_id, limit)
    state = process.slots
    if state.user_connections[user_id] >= limit:
        return False
    state.user_connections[user_id] += 1
    # Connections changed: the next tick renews the entry (and finds out if the store lost it).
    registry.publish_soon()
    return True


async def _admit_shared(store: stores.Store, user_id: int, limit: int) -> bool:
    registry.ensure_beating()  # the heartbeat keeps this process's slots counted
    state = process.slots
    state.in_flight[user_id] += 1
    try:
        admitted, registered = await store.slot_take(
            user_id=user_id, process_id=registry.PROCESS_ID, limit=limit, ttl=registry.ttl()
        )
    except asyncio.CancelledError:
        state.unsynced.add(user_id)  # the slot may be taken: the next tick sets it right
        raise
    except store.errors as exc:
        logger.warning("connection slots unavailable in the store, counting this process's only: %s", exc)
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
    state.stored_slots[user_id] += 1
    registry.publish_soon()
    return True


def release(*, user_id: int) -> None:
    """Uncount a connection counted by :func:`admit` (no await: it runs in every teardown).

    On a shared bus, the slot is given back in a task of its own, one round trip.
    """
    state = process.slots
    _decrement(state.user_connections, user_id)
    registry.publish_soon()
    if state.stored_slots.get(user_id):
        _decrement(state.stored_slots, user_id)
        spawn(_give_back(user_id))


async def _give_back(user_id: int) -> None:
    """Give a slot back in the store; on failure the next tick sets this process's count there."""
    state = process.slots
    store = stores.required()
    state.in_flight[user_id] += 1
    try:
        await store.slot_give(user_id=user_id, process_id=registry.PROCESS_ID)
    except asyncio.CancelledError:
        state.unsynced.add(user_id)
        raise
    except store.errors as exc:
        state.unsynced.add(user_id)
        logger.warning("giving back a connection slot in the store failed: %s", exc)
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
    """The store lost this process's entry, and maybe its slots: set every count again next tick."""
    process.slots.resync_all = True


async def _resync() -> None:
    """Set this process's slot counts in the store to what it holds, for the users that may be wrong there."""
    state = process.slots
    if not (state.unsynced or state.resync_all):
        return
    users = set(state.unsynced)
    if state.resync_all:
        users |= set(state.user_connections) | set(state.stored_slots)
    # A user with a slot call under way waits for the next tick: its count in the store is moving.
    busy = {user_id for user_id in users if state.in_flight.get(user_id)}
    users -= busy
    state.unsynced = busy
    state.resync_all = False
    if not users:
        return
    counts = {user_id: state.user_connections.get(user_id, 0) for user_id in users}
    for user_id, count in counts.items():
        if count:
            state.stored_slots[user_id] = count
        else:
            state.stored_slots.pop(user_id, None)
    try:
        await stores.required().slots_set(process_id=registry.PROCESS_ID, counts=counts)
    except BaseException:
        state.unsynced |= users  # again next tick
        raise


registry.on_lost(_resync_all)
registry.on_published(_resync)
metrics.CONNECTION_SLOTS.set_function(local_connections)
