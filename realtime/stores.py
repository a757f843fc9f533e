"""The state server processes share, chosen by the bus: none (one process), PostgreSQL or Redis.

Connection slots (realtime.slots), rate limits (realtime.ratelimit), the
registry of live processes with their presence snapshots
(realtime.registry) and the leases of exclusive jobs (realtime.background)
ask :func:`current` for the store of the selected bus (realtime.buses) and
call the operations of :class:`Store`, each one atomic and one round trip:
realtime.redis_store over Redis, realtime.pg_store over PostgreSQL. On the
in-process bus there is no store (``None``): one process serves
everything, and those modules keep their state in its memory.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import buses


class Lease(Protocol):
    """Which process runs an exclusive job: held by one at a time, lost unless renewed in time."""

    async def acquire(self) -> bool:
        """Return whether this process holds the lease now."""

    async def renew(self) -> bool:
        """Extend the lease to a full term; return False if it was lost."""

    async def release(self) -> None:
        """Give the lease back, so another process takes over at once."""


class Store(Protocol):
    """The operations shared across processes. Each raises one of ``errors`` while its server is down."""

    errors: tuple[type[BaseException], ...]

    async def heartbeat(self, *, process_id: str, ttl: float, snapshot: dict) -> bool:
        """Register ``process_id`` until ``ttl`` seconds from now with its snapshot; return whether anew.

        Anew: it was not registered (it just started, or the store lost its
        entry, and maybe its slots with it). Processes whose entry expired
        leave the registry.
        """

    async def others(self, *, process_id: str) -> dict[str, Any]:
        """Return the snapshots (JSON, str or bytes) of the live processes other than ``process_id``."""

    async def slot_take(self, *, user_id: int, process_id: str, limit: int, ttl: float) -> tuple[bool, bool]:
        """Take a connection slot unless the live processes hold ``limit``; return (admitted, anew).

        Also renews the entry of ``process_id`` (its slots count while it lives).
        """

    async def slot_give(self, *, user_id: int, process_id: str) -> None:
        """Give back a slot taken by :meth:`slot_take`."""

    async def slots_set(self, *, process_id: str, counts: dict[int, int]) -> None:
        """Set the slot counts of ``process_id`` for the given users (after the store lost them)."""

    async def rate_hit(self, *, user_id: int, key: str, count: int, seconds: float) -> bool:
        """Record a hit unless ``count`` were recorded within ``seconds``; return whether recorded."""

    def lease(self, name: str, seconds: float) -> Lease:
        """Return the lease of the exclusive job ``name``, held ``seconds`` past each renewal."""


_stores: dict[str, Store] = {}


def current() -> Store | None:
    """Return the store of the selected bus, or None on the in-process bus (one process)."""
    bus = buses.selected()
    if bus == "memory":
        return None
    found = _stores.get(bus)
    if found is None:
        # Imported on first use: the in-process setup loads neither client library.
        if bus == "redis":
            from .redis_store import RedisStore

            found = RedisStore()
        else:
            from .pg_store import PostgresStore

            found = PostgresStore()
        _stores[bus] = found
    return found


def required() -> Store:
    """Return the store of the selected bus; raise RuntimeError on the in-process bus, which has none."""
    store = current()
    if store is None:
        raise RuntimeError("no store is shared on the in-process bus (REALTIME_BUS=memory)")
    return store


async def close() -> None:
    """Close this event loop's clients of every store used (tests; a server keeps them)."""
    if "redis" in _stores:
        from . import redis_store

        await redis_store.close()
    if "postgres" in _stores:
        from . import pg_store

        await pg_store.close()
