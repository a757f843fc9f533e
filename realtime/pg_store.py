"""The core's PostgreSQL store (``REALTIME_BUS=postgres``): what server processes share, in the database.

The same operations as realtime.redis_store, on the tables and functions
of the core's migration 0005 (UNLOGGED: this state lives as long as the
processes that hold it). Each operation is one statement or one function
call, atomic, one round trip; times come from PostgreSQL (``now()``), so
processes on hosts whose clocks disagree still share one window.

Each process and event loop has one small pool of its own
(:data:`MAX_CONNECTIONS`), apart from Django's: the realtime DB thread may
wait on a limit check (an app's admission step may call the rate limit from
there), so a check must never wait for that thread or its connections.
"""

from __future__ import annotations

import asyncio
import json
import uuid
import weakref
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connections
from psycopg_pool import AsyncConnectionPool

from . import pgconn
from .process import process

# A handshake storm queues for these (POOL_TIMEOUT) rather than opening a connection per client.
MAX_CONNECTIONS = 4
POOL_TIMEOUT = 2.0
# A lost connection is retried with a doubling delay for this long, then the next call starts afresh.
RECONNECT_SECONDS = 5.0
# Fail fast while PostgreSQL is down or a lock is stuck: every caller degrades gracefully.
STATEMENT_TIMEOUT_MS = 2000
# What a call raises while PostgreSQL is down (psycopg_pool.PoolTimeout is a psycopg.Error).
ERRORS: tuple[type[BaseException], ...] = (OSError, psycopg.Error)

# Django's options that are no libpq parameters.
_DJANGO_OPTIONS = {"pool", "isolation_level", "server_side_binding", "assume_role", "context"}


def conninfo() -> str:
    """Return the libpq connection string of the default database, as Django connects to it."""
    params = connections["default"].settings_dict
    options = {k: str(v) for k, v in (params.get("OPTIONS") or {}).items() if k not in _DJANGO_OPTIONS}
    server_options = f"-c statement_timeout={STATEMENT_TIMEOUT_MS} {options.pop('options', '')}".strip()
    return psycopg.conninfo.make_conninfo(
        # As Django connects: no NAME is the database "postgres", unless a service file names one.
        dbname=params["NAME"] or (None if "service" in options else "postgres"),
        user=params.get("USER") or None,
        password=params.get("PASSWORD") or None,
        host=params.get("HOST") or None,
        port=str(params["PORT"]) if params.get("PORT") else None,
        connect_timeout=str(round(POOL_TIMEOUT)),
        application_name="realtime-store",
        options=server_options,
        **options,
    )


@dataclass(eq=False)
class Client:
    """One event loop's pool."""

    pool: AsyncConnectionPool
    opened: bool = False


# psycopg's async connections belong to the loop that opened them: one pool per loop, kept.
process.declare("pg_clients", weakref.WeakKeyDictionary)


async def fetch(query: str, params: tuple[Any, ...] = ()) -> list[tuple]:
    """Run one statement on this event loop's pool; return its rows. Raises ERRORS."""
    loop = asyncio.get_running_loop()
    clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = process.pg_clients
    found = clients.get(loop)
    if found is None:
        pool = AsyncConnectionPool(
            conninfo(),
            min_size=1,
            max_size=MAX_CONNECTIONS,
            timeout=POOL_TIMEOUT,
            kwargs={"autocommit": True},
            check=pgconn.check,  # a connection ended while idle is replaced, not handed out
            reconnect_timeout=RECONNECT_SECONDS,  # see project/settings.py's pool: back within seconds
            open=False,
            name="realtime-store",
        )
        found = clients[loop] = Client(pool)
    if not found.opened:
        await found.pool.open()  # safe to call again: concurrent first callers share the pool
        found.opened = True
    async with found.pool.connection() as conn:
        cursor = await conn.execute(query, params)
        return await cursor.fetchall() if cursor.description else []


async def close() -> None:
    """Close this event loop's pool (tests; a server keeps its pool for its life)."""
    found = process.pg_clients.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.pool.close()


class PostgresStore:
    """Registry, slots, rate logs and leases in PostgreSQL: the operations of realtime.stores."""

    errors = ERRORS

    async def heartbeat(self, *, process_id: str, ttl: float, snapshot: dict) -> bool:
        """Register ``process_id`` until ``ttl`` from now with its snapshot; return whether anew."""
        text = json.dumps(snapshot, separators=(",", ":"))
        rows = await fetch("SELECT realtime_heartbeat(%s, %s, %s)", (process_id, ttl, text))
        return rows[0][0]

    async def others(self, *, process_id: str) -> dict[str, str]:
        """Return the snapshots (JSON) of the live processes other than ``process_id``."""
        rows = await fetch(
            "SELECT process_id, snapshot FROM realtime_process"
            " WHERE expires > now() AND process_id <> %s AND snapshot IS NOT NULL",
            (process_id,),
        )
        return dict(rows)

    async def slot_take(self, *, user_id: int, process_id: str, limit: int, ttl: float) -> tuple[bool, bool]:
        """Take a slot of ``user_id`` unless the live processes hold ``limit``; (admitted, anew)."""
        rows = await fetch(
            "SELECT * FROM realtime_slot_take(%s, %s, %s, %s)", (user_id, process_id, limit, ttl)
        )
        return rows[0][0], rows[0][1]

    async def slot_give(self, *, user_id: int, process_id: str) -> None:
        """Give back a slot taken by :meth:`slot_take`."""
        await fetch("SELECT realtime_slot_give(%s, %s)", (user_id, process_id))

    async def slots_set(self, *, process_id: str, counts: dict[int, int]) -> None:
        """Set the slot counts of ``process_id`` for the given users."""
        users = list(counts)
        await fetch(
            "SELECT realtime_slots_set(%s, %s::bigint[], %s::integer[])",
            (process_id, users, [counts[user_id] for user_id in users]),
        )

    async def rate_hit(self, *, user_id: int, key: str, count: int, seconds: float) -> bool:
        """Record a hit unless ``count`` were recorded within ``seconds``; return whether recorded."""
        rows = await fetch("SELECT realtime_rate_hit(%s, %s, %s)", (f"{user_id}:{key}", count, seconds))
        return rows[0][0]

    def lease(self, name: str, seconds: float) -> PostgresLease:
        """Return the lease of the exclusive job ``name``, held ``seconds`` per renewal."""
        return PostgresLease(name, seconds)


class PostgresLease:
    """A lease row with an expiry: the holder renews it, another process takes it once it expired.

    Not a session advisory lock: a holder that stalls (paused, partitioned)
    must lose the job after the lease, as over Redis, and a lock would stay
    held as long as its connection lives.
    """

    def __init__(self, name: str, seconds: float) -> None:
        self.name = name
        self.seconds = seconds
        self.holder = uuid.uuid4().hex

    async def acquire(self) -> bool:
        """Return whether this process holds the lease now (taken if free or expired). Raises ERRORS."""
        rows = await fetch(
            "INSERT INTO realtime_lease AS lease (name, holder, expires)"
            " VALUES (%s, %s, now() + %s * interval '1 second')"
            " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires"
            " WHERE lease.expires <= now() RETURNING 1",
            (self.name, self.holder, self.seconds),
        )
        return bool(rows)

    async def renew(self) -> bool:
        """Extend the lease to a full term; return False if it was lost (expired, taken). Raises ERRORS."""
        rows = await fetch(
            "UPDATE realtime_lease SET expires = now() + %s * interval '1 second'"
            " WHERE name = %s AND holder = %s AND expires > now() RETURNING 1",
            (self.seconds, self.name, self.holder),
        )
        return bool(rows)

    async def release(self) -> None:
        """Give the lease back, so another process takes over at once. Raises ERRORS."""
        await fetch("DELETE FROM realtime_lease WHERE name = %s AND holder = %s", (self.name, self.holder))
